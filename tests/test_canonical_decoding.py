"""The canonical decoder: every message becomes a reading or a dead letter with a reason.

Every message goes through `Router.decode`, the function the daemon calls for each one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import Router
from ingest.decode.topics import TopicScheme
from ingest.settings import DecodersSettings, IngestSettings
from storage import Availability, DeadLetter, Reading

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SCHEME = TopicScheme("meterflow")
METER = "meterflow/smart_meter/m-1/telemetry"
PANEL = "meterflow/solar_panel/pv-1/telemetry"


def router(prefix: str = "meterflow", limits: IngestSettings | None = None) -> Router:
    """The router of a daemon with only the canonical decoder, its default."""
    return Router.configured(DecodersSettings(), limits or IngestSettings(), prefix)


ROUTER = router()


def decoded(topic: str, body: bytes, via: Router = ROUTER) -> Reading | DeadLetter | Availability:
    """The one thing a canonical message decodes to."""
    [item] = via.decode(topic, body, NOW)
    return item


def decode(topic: str, document: object) -> Reading | DeadLetter:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    item = decoded(topic, body)
    assert not isinstance(item, Availability)
    return item


def good(**changes: object) -> dict[str, object]:
    return {"ts": "2026-11-22T12:59:00+01:00", "energy_kwh": 0.5, "power_kw": 2.0} | changes


def test_meter_reading_is_normalised_to_utc_and_consumption() -> None:
    """An offset timestamp becomes UTC; a smart meter's reading is consumption."""
    reading = decode(METER, good(voltage=231.0, battery_pct=77))
    assert isinstance(reading, Reading)
    assert reading.recorded_at == datetime(2026, 11, 22, 11, 59, tzinfo=UTC)
    assert (reading.device_id, reading.data_type) == ("m-1", "consumption")
    assert (reading.voltage, reading.battery_pct, reading.metadata) == (231.0, 77.0, None)


def test_a_stated_interval_says_where_the_energy_began() -> None:
    """interval_s: the energy covers that many seconds up to ts; zero or more than a
    month is refused by name."""
    reading = decode(METER, good(interval_s=900))
    assert isinstance(reading, Reading)
    assert reading.interval_start == datetime(2026, 11, 22, 11, 44, tzinfo=UTC)
    for wrong in (0, 31 * 86400 + 1):
        rejected = decode(METER, good(interval_s=wrong))
        assert isinstance(rejected, DeadLetter)
        assert rejected.reason.startswith("interval_s:")


def test_solar_reading_keeps_its_own_fields_and_unknown_ones_as_metadata() -> None:
    """Solar fields land in their columns; fields nobody declared are kept, not dropped."""
    reading = decode(PANEL, good(irradiance_wm2=800, panel_temp_c=41.5, inverter="SMA-5"))
    assert isinstance(reading, Reading)
    assert reading.data_type == "production"
    assert (reading.irradiance_wm2, reading.panel_temp_c) == (800.0, 41.5)
    assert reading.metadata == {"inverter": "SMA-5"}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1795339200, datetime(2026, 11, 22, 9, 20, tzinfo=UTC)),
        (1795339200123, datetime(2026, 11, 22, 9, 20, 0, 123000, tzinfo=UTC)),
        (1795339200.123456, datetime(2026, 11, 22, 9, 20, 0, 123000, tzinfo=UTC)),
        ("2026-11-22T09:20:00Z", datetime(2026, 11, 22, 9, 20, tzinfo=UTC)),
        ("2026-11-22T10:20:00.9999+01:00", datetime(2026, 11, 22, 9, 20, 0, 999000, tzinfo=UTC)),
    ],
)
def test_timestamps_in_every_accepted_form_become_utc_milliseconds(
    ts: object, expected: datetime
) -> None:
    """Epoch seconds, epoch milliseconds and ISO 8601 all give UTC to the millisecond."""
    reading = decode(METER, good(ts=ts))
    assert isinstance(reading, Reading)
    assert reading.recorded_at == expected


@pytest.mark.parametrize(
    ("topic", "document", "reason"),
    [
        (METER, b"{not json", "payload is not valid JSON"),
        (METER, b"\xff\xfe", "payload is not valid JSON"),
        (METER, [1, 2], "payload: Input should be an object"),
        (METER, good(energy_kwh=-0.1), "energy_kwh: Input should be greater than or equal to 0"),
        (METER, good(energy_kwh="0.5"), "energy_kwh: Input should be a valid number"),
        (METER, good(energy_kwh=True), "energy_kwh: Input should be a valid number"),
        (METER, good(battery_pct=101), "battery_pct: Input should be less than or equal to 100"),
        (METER, {"energy_kwh": 1, "power_kw": 1}, "ts: Field required"),
        (METER, good(ts="2026-11-22T12:00:00"), "ts: ts needs a UTC offset"),
        (METER, good(ts="soon"), "ts: 'soon' is not ISO 8601"),
        (METER, good(ts=True), "ts: ts must be ISO 8601 text or an epoch number"),
        (METER, good(ts="2026-11-22T13:00:00+00:00"), "more than 300s in the future"),
        (METER, good(ts="2010-01-01T00:00:00Z"), "is older than 3650 days"),
        (METER, good(device_id="m-2"), "device_id 'm-2' does not match the topic's 'm-1'"),
        ("meterflow/wind_turbine/h-1/telemetry", good(), "unknown device type 'wind_turbine'"),
        ("meterflow/smart_meter/m-1/config", good(), "matches no configured decoder's pattern"),
        ("elsewhere/smart_meter/m-1/telemetry", good(), "matches no configured decoder's pattern"),
        ("meterflow/smart_meter//telemetry", good(), "matches no configured decoder's pattern"),
        ("meterflow/smart_meter/m\x07/telemetry", good(), "device id contains control characters"),
        (PANEL, good(irradiance_wm2=5000), "irradiance_wm2: Input should be less than or equal"),
    ],
)
def test_bad_message_becomes_a_dead_letter_with_a_reason_in_words(
    topic: str, document: object, reason: str
) -> None:
    """Each kind of bad input is rejected with a reason that names what is wrong."""
    letter = decode(topic, document)
    assert isinstance(letter, DeadLetter)
    assert reason in letter.reason
    assert letter.topic == topic


@pytest.mark.parametrize(
    ("document", "kind"),
    [
        (good(ts="soon"), "timestamp"),
        (good(ts="2026-11-22T12:00:00"), "timestamp"),
        (good(ts=True), "timestamp"),
        (good(ts="2026-11-22T13:00:00+00:00"), "timestamp"),
        ({"energy_kwh": 1, "power_kw": 1}, "timestamp"),
        (good(ts="soon", energy_kwh=-1), "payload"),
        (good(energy_kwh=-1), "payload"),
    ],
)
def test_a_rejection_for_the_time_alone_is_counted_as_a_timestamp_problem(
    document: object, kind: str
) -> None:
    letter = decode(METER, document)
    assert isinstance(letter, DeadLetter)
    assert letter.kind == kind


def test_nan_and_infinity_are_rejected() -> None:
    """JSON extensions NaN and Infinity are not numbers a meter can report."""
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"ts": 1795339200, "energy_kwh": ' + literal + b', "power_kw": 1}'
        letter = decoded(METER, body)
        assert isinstance(letter, DeadLetter)
        assert letter.reason.startswith("energy_kwh:")


def test_oversized_payload_is_rejected_before_parsing_and_kept_truncated() -> None:
    """A payload over the limit is refused by size; its dead letter keeps a bounded prefix."""
    limited = router(limits=IngestSettings(max_payload_bytes=1024, dead_letter_max_bytes=256))
    body = b"{" + b" " * 5000 + b"}"
    letter = decoded(METER, body, limited)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "payload of 5002 bytes exceeds the limit of 1024"
    assert (len(letter.payload), letter.payload_size) == (256, 5002)


def test_a_one_megabyte_payload_costs_no_parsing() -> None:
    """Even a 1 MiB document of valid JSON is refused by its size alone, with a bounded copy."""
    body = json.dumps(good(padding="x" * 2**20)).encode()
    letter = decoded(METER, body)
    assert isinstance(letter, DeadLetter)
    assert letter.reason.startswith(f"payload of {len(body)} bytes exceeds the limit")
    assert len(letter.payload) == IngestSettings().dead_letter_max_bytes


def test_prefix_may_contain_slashes() -> None:
    """A prefix like `site/7/meterflow` is matched as a whole."""
    reading = decoded(
        "site/7/meterflow/smart_meter/m-1/telemetry",
        json.dumps(good()).encode(),
        router("site/7/meterflow"),
    )
    assert isinstance(reading, Reading)
    assert reading.device_id == "m-1"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(topic=st.text(max_size=80), body=st.binary(max_size=300))
def test_arbitrary_bytes_and_topics_never_raise(topic: str, body: bytes) -> None:
    """Whatever arrives, the router returns what it decoded; it never raises."""
    for item in ROUTER.decode(topic, body, NOW):
        assert isinstance(item, Reading | DeadLetter | Availability)


@settings(max_examples=300, deadline=None)
@given(
    device=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s),
    document=st.dictionaries(
        st.sampled_from(["ts", "energy_kwh", "power_kw", "voltage", "battery_pct", "x"]),
        json_values,
    ),
)
def test_arbitrary_json_documents_never_raise(device: str, document: dict[str, object]) -> None:
    """Any JSON object under any device id decodes to a reading or a dead letter."""
    topic = SCHEME.telemetry("smart_meter", device)
    result = decoded(topic, json.dumps(document).encode())
    assert isinstance(result, Reading | DeadLetter)
    if isinstance(result, Reading):
        assert result.recorded_at.tzinfo is UTC
        assert NOW - timedelta(days=3650) <= result.recorded_at <= NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"online", True),
        (b"Offline", False),
        (b" ONLINE\n", True),
        (b'"offline"', False),
        (b'{"state": "online"}', True),
        (b'{"status": "offline"}', False),
    ],
)
def test_status_messages_in_the_shapes_devices_use_become_availability(
    payload: bytes, online: bool
) -> None:
    """Bare words in any case, JSON strings and {"state": ...} objects all say online/offline."""
    item = decoded("meterflow/smart_meter/m-1/status", payload)
    assert item == Availability(
        "meterflow/smart_meter/m-1/status", "m-1", "smart_meter", online, NOW
    )


@pytest.mark.parametrize("payload", [b"", b"maybe", b'{"state": 1}', b"[1]", b"{bad"])
def test_a_status_message_saying_neither_online_nor_offline_is_a_dead_letter(
    payload: bytes,
) -> None:
    """Anything else on a status topic is rejected with a reason that names what is expected."""
    item = decoded("meterflow/smart_meter/m-1/status", payload)
    assert isinstance(item, DeadLetter)
    assert item.kind == "payload"
    assert '"online" or "offline"' in item.reason
