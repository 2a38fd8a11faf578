"""Device decoders: topic patterns, malformed documents, clocks, the generic decoder end to end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.decode import Router, TopicPattern
from ingest.errors import ConfigError
from meterflow.publisher import Publisher
from meterflow.settings import load_settings
from storage import DeadLetter, Reading
from tests.helpers import make_settings, query, router_for, running_daemon, wait_until
from tests.mosquitto import Mosquitto

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_named_levels_capture_one_level_or_several() -> None:
    """{name} is one level, {name*} one or more; the MQTT filter stops at the first '*'."""
    gen1 = TopicPattern("shellies/{device_id*}/relay/{channel}/{metric}")
    assert gen1.match("shellies/shellies/shellyem3/relay/0/power") == {
        "device_id": "shellies/shellyem3", "channel": "0", "metric": "power",
    }  # fmt: skip
    assert gen1.match("shellies/shellyem3/relay/0") is None
    assert gen1.subscription == "shellies/#"
    tele = TopicPattern("tele/{device_id}/SENSOR")
    assert tele.match("tele/pow1/SENSOR") == {"device_id": "pow1"}
    assert tele.match("tele/a/b/SENSOR") is None
    assert tele.match("tele//SENSOR") is None
    assert tele.subscription == "tele/+/SENSOR"


@pytest.mark.parametrize(
    "pattern",
    ["{device_id*}/events/rpc", "a/{x*}/{y*}", "a/{x}/{x}", "a/+/b", "a/#", "a/{bad-name}"],
)
def test_patterns_that_cannot_work_are_refused_with_the_reason(pattern: str) -> None:
    """Subscribing to everything, two multi-level names, raw MQTT wildcards: ConfigError."""
    with pytest.raises(ConfigError, match=r"topic pattern"):
        TopicPattern(pattern)


def _router(**overrides: Any) -> Router:
    settings = load_settings(None, **overrides)
    return router_for(settings)


ALL = _router(**{"decoders.enabled": ["canonical", "tasmota", "shelly", "zigbee2mqtt"]})


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tele/pow1/SENSOR", b'{"ENERGY": {"Total": "lots", "Power": 5}}',
         "ENERGY.Total: expected a number, got 'lots'"),
        ("tele/pow1/SENSOR", b'{"ENERGY": [1, 2]}', "ENERGY: expected an object"),
        ("tele/pow1/SENSOR", b'{"ENERGY": {"Total": -3}}',
         "ENERGY.Total: expected a counter of 0 or more, got -3"),
        ("tele/pow1/SENSOR", b"not json", "payload: is not valid JSON"),
        ("tele/pow1/LWT", b"Maybe", 'payload: expected "Online" or "Offline"'),
        ("plug/status/switch:0", b'{"apower": 5, "aenergy": {"total": "x"}}',
         "switch:0.aenergy.total: expected a number, got 'x'"),
        ("shellies/plug/relay/0/power", b"n/a", "power: expected a number, got 'n/a'"),
        ("zigbee2mqtt/plug-1", b'{"battery": 150}',
         "battery: expected a percentage within 0..100, got 150"),
        ("zigbee2mqtt/plug-1", b'{"power": true}', "power: expected a number, got true"),
    ],
)  # fmt: skip
def test_a_document_of_the_wrong_shape_is_a_dead_letter_naming_the_field(
    topic: str, payload: bytes, reason: str
) -> None:
    """A topic the decoder claims with a payload it cannot read: a dead letter, not a crash."""
    [decoded] = ALL.decode(topic, payload, NOW)
    assert isinstance(decoded, DeadLetter)
    assert decoded.reason.startswith(reason), decoded.reason
    assert decoded.kind == "payload"


def test_a_topic_no_decoder_claims_is_a_dead_letter() -> None:
    """Under a subscribed filter but matching no pattern: rejected with the reason."""
    [decoded] = ALL.decode("tele/pow1/RESULT", b"{}", NOW)
    assert isinstance(decoded, DeadLetter)
    assert decoded.reason == "the topic matches no configured decoder's pattern"


OPENDTU: dict[str, Any] = {
    "name": "opendtu",
    "topics": ["solar/{device_id}/0/{field}"],
    "availability_topics": ["solar/{device_id}/status/reachable"],
    "device_type": "solar_panel",
    "fields": {
        "yieldtotal": {"measure": "energy", "unit": "kWh", "cumulative": True},
        "power": {"measure": "power", "unit": "W"},
        "voltage": {"measure": "voltage", "unit": "V"},
    },
}
JSON_METER: dict[str, Any] = {
    "name": "meter",
    "topics": ["meters/{device_id}/state"],
    "timestamp": "ts",
    "timestamp_format": "epoch_s",
    "fields": {
        "import.total": {"measure": "energy", "unit": "Wh", "cumulative": True},
        "power": {"measure": "power", "unit": "kW"},
    },
}


def test_the_generic_decoder_reads_plain_numbers_by_their_topic_level() -> None:
    """solar/<id>/0/power = 712 W: a production reading of 0.712 kW; unmapped fields skipped."""
    router = _router(**{"decoders.enabled": ["opendtu"], "decoders.generic": [OPENDTU]})
    [reading] = router.decode("solar/114185212345/0/power", b"712", NOW)
    assert isinstance(reading, Reading)
    assert (reading.device_id, reading.data_type, reading.power_kw) == (
        "114185212345", "production", 0.712,
    )  # fmt: skip
    assert not router.decode("solar/114185212345/0/temperature", b"31.5", NOW)
    # An empty message is "no value" (skipped and counted, issue 18), text is a mistake.
    assert not router.decode("solar/114185212345/0/power", b"", NOW)
    [letter] = router.decode("solar/114185212345/0/power", b"n/a", NOW)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "power: expected a number, got 'n/a'"


def test_a_json_family_with_none_of_its_fields_names_them_all() -> None:
    """A document of another shape on a configured topic says which fields it lacked."""
    router = _router(**{"decoders.enabled": ["meter"], "decoders.generic": [JSON_METER]})
    [letter] = router.decode("meters/m-1/state", b'{"ts": 1795348800, "other": 1}', NOW)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "import.total, power: none of these fields is present"


@pytest.mark.parametrize(
    ("ts", "stamped", "quality"),
    [
        (1795334400, datetime(2026, 11, 22, 8, 0, tzinfo=UTC), "good"),
        (0, NOW, "clock_unsynced"),
        (4102444800, NOW, "clock_unsynced"),  # 2100: far future
    ],
)
def test_an_unsynced_device_clock_is_replaced_by_the_receive_time_and_flagged(
    ts: int, stamped: datetime, quality: str
) -> None:
    """Epoch 0 or a far-future time: receive time, quality clock_unsynced; a sane one is kept."""
    router = _router(**{"decoders.enabled": ["meter"], "decoders.generic": [JSON_METER]})
    [reading] = router.decode("meters/m-1/state", f'{{"ts": {ts}, "power": 1.5}}'.encode(), NOW)
    assert isinstance(reading, Reading)
    assert (reading.recorded_at, reading.quality) == (stamped, quality)


@pytest.mark.mqtt
async def test_a_plain_number_family_ingests_end_to_end_and_counts_energy_once(
    broker: Mosquitto, publisher: Publisher, db_path: Path
) -> None:
    """OpenDTU-style topics, configured only: power and counter rows, one restart, one reset.

    The counter goes 100.0 -> 100.4 -> (daemon restarted) -> 100.9 -> 0.2 -> 0.35: the drop
    to 0.2 is held until 0.35 shows a reset, so the stored energy is 0.4 + 0.5 + 0.35 =
    1.25 kWh; the first value and the held one give no energy and carry nothing else, so
    they are no rows (counted as ignored); the offline status marks the inverter inactive.
    """
    serial = "114185212345"
    settings = make_settings(
        broker.url, db_path, "unused",
        **{"decoders.enabled": ["opendtu"], "decoders.generic": [OPENDTU]},
    )  # fmt: skip

    async def send(*messages: tuple[str, bytes]) -> None:
        for field, value in messages:
            publisher.publish(f"solar/{serial}/0/{field}", value)
        await asyncio.to_thread(publisher.wait_acknowledged)

    async with running_daemon(settings) as daemon:
        await send(("yieldtotal", b"100.0"), ("power", b"712.5"), ("voltage", b"31.2"))
        await send(("yieldtotal", b"100.4"))
        await wait_until(lambda: daemon.stats.stored == 3, what="3 rows")
        assert daemon.stats.ignored == 1
    async with running_daemon(settings) as daemon:
        await send(("yieldtotal", b"100.9"), ("yieldtotal", b"0.2"), ("yieldtotal", b"0.35"))
        publisher.publish(f"solar/{serial}/status/reachable", b"maybe")
        publisher.publish(f"solar/{serial}/status/reachable", b"0")
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 2, what="2 more rows")
        await wait_until(lambda: daemon.stats.statuses == 1, what="the offline status")
        assert daemon.stats.rejected.total() == 1  # "maybe" is not an availability word
    rows = query(
        db_path,
        "SELECT data_type, energy_amount, instantaneous_power, voltage FROM energy_data "
        "ORDER BY recorded_at",
    )
    assert rows == [
        ("production", None, 0.7125, None),
        ("production", None, None, 31.2),
        ("production", pytest.approx(0.4), None, None),
        ("production", pytest.approx(0.5), None, None),
        ("production", pytest.approx(0.35), None, None),
    ]
    assert query(db_path, "SELECT status FROM iot_devices") == [("inactive",)]
    assert query(db_path, "SELECT value_kwh FROM meter_counters") == [(0.35,)]
    assert datetime.now(UTC) - timedelta(minutes=5) < _newest(db_path)


def _newest(db_path: Path) -> datetime:
    [(text,)] = query(db_path, "SELECT max(recorded_at) FROM energy_data")
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.mqtt
async def test_tasmota_plugs_are_ingested_as_they_publish(
    broker: Mosquitto, publisher: Publisher, db_path: Path
) -> None:
    """tele/<topic>/SENSOR twice and the LWT: 0.5 kWh from the Total counter, then inactive."""
    settings = make_settings(broker.url, db_path, "unused", **{"decoders.enabled": ["tasmota"]})
    sensor = '{{"Time":"2026-11-22T13:00:00","ENERGY":{{"Total":{total},"Power":{power}}}}}'
    async with running_daemon(settings) as daemon:
        publisher.publish("tele/plug-7/SENSOR", sensor.format(total=6.25, power=2635).encode())
        publisher.publish("tele/plug-7/SENSOR", sensor.format(total=6.75, power=120).encode())
        publisher.publish("tele/plug-7/STATE", b'{"Time":"2026-11-22T13:00:05","POWER":"ON"}')
        publisher.publish("tele/plug-7/LWT", b"Offline")
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.received == 4, what="4 messages")
        await wait_until(lambda: daemon.stats.statuses == 1, what="the last will applied")
    assert (daemon.stats.stored, daemon.stats.ignored) == (2, 1)
    rows = query(
        db_path, "SELECT energy_amount, instantaneous_power FROM energy_data ORDER BY 2 DESC"
    )
    assert rows == [(None, 2.635), (pytest.approx(0.5), 0.12)]
    assert query(db_path, "SELECT device_id, status FROM iot_devices") == [("plug-7", "inactive")]
