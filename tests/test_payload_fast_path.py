"""The msgspec fast path validates exactly as the pydantic models do, only sooner."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.decode.payload import (
    PAYLOAD_MODELS,
    Telemetry,
    _fast_path,
    parse_telemetry,
    vouched_telemetry,
)
from ingest.errors import PayloadError

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def number(low: float, high: float) -> st.SearchStrategy[object]:
    """Mostly in bounds, often right at or just past them, now and then anything."""
    edges = [low, high, low - 0.001, high + 0.001, int(low), int(high), int(high) + 1]
    return st.one_of(
        st.floats(low, high),
        st.integers(int(low), int(high)),
        st.sampled_from(edges),
        junk,
    )


timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-22T09:20:00Z",
            "2026-11-22T10:20:00.9999+01:00",
            "2026-11-22T09:20:00",
            "2026-11-22 09:20:00+00:00",
            "2026-11-22",
            "soon",
            "",
            1795339200,
            1795339200123,
            1795339200.5,
            -1,
            10**30,
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    junk,
)
text = st.one_of(st.text(max_size=40), st.text(min_size=120, max_size=140), junk)
OPTIONAL = {
    "device_id": text,
    "voltage": number(0, 1_000_000),
    "current": number(0, 100_000),
    "battery_pct": number(0, 100),
    "quality": text,
    "irradiance_wm2": number(0, 2000),
    "panel_temp_c": number(-60, 150),
    "state_of_charge": number(0, 100),
    "discharge_energy_kwh": number(0, 100_000),
    "discharge_power_kw": number(0, 100_000),
    "interval_s": number(0, 31 * 86400 + 1),
    "seq": junk,
    "firmware": junk,
}
documents = st.fixed_dictionaries(
    {"ts": timestamps, "energy_kwh": number(0, 100_000), "power_kw": number(0, 100_000)},
    optional=OPTIONAL,
) | st.dictionaries(st.sampled_from(sorted(OPTIONAL)), junk)


def by_the_model(device_type: str, payload: bytes) -> Telemetry | str:
    try:
        document = PAYLOAD_MODELS[device_type].model_validate_json(payload)
    except ValidationError as exc:
        return str(exc)

    def own(name: str) -> float | None:
        """A field of the device type's model, not an extra one of the same name."""
        value: float | None = (
            getattr(document, name) if name in type(document).model_fields else None
        )
        return value

    return Telemetry(
        ts=document.ts,
        energy_kwh=document.energy_kwh,
        power_kw=document.power_kw,
        voltage=document.voltage,
        current=document.current,
        battery_pct=document.battery_pct,
        irradiance_wm2=own("irradiance_wm2"),
        panel_temp_c=own("panel_temp_c"),
        quality=document.quality,
        device_id=document.device_id,
        extra=document.model_extra or None,
        interval_s=document.interval_s,
        state_of_charge=own("state_of_charge"),
        discharge_energy_kwh=own("discharge_energy_kwh"),
        discharge_power_kw=own("discharge_power_kw"),
    )


def by_parse_telemetry(device_type: str, payload: bytes) -> Telemetry | str:
    try:
        return parse_telemetry(device_type, payload)
    except PayloadError as exc:
        return str(exc.error)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(PAYLOAD_MODELS)), documents)
@example("smart_meter", {"ts": True, "energy_kwh": 1, "power_kw": 1})
@example("smart_meter", {"ts": 1.0, "energy_kwh": 1, "power_kw": 1, "irradiance_wm2": 9999})
@example("solar_panel", {"ts": "2026-11-22T09:20:00Z", "energy_kwh": 1, "power_kw": True})
@example("heat_pump", {"ts": 1.0, "energy_kwh": 1, "power_kw": 1, "state_of_charge": 50})
@example("ev_charger", {"ts": 1.0, "energy_kwh": 1, "power_kw": 1, "state_of_charge": 101})
@example("battery_storage", {"ts": 1.0, "energy_kwh": 0, "power_kw": 0, "discharge_power_kw": 2})
def test_fast_path_accepts_and_refuses_exactly_what_the_model_does(
    device_type: str, document: dict[str, object]
) -> None:
    """Same values, same extras in the same order, same refusals with the model's words."""
    payload = json.dumps(document).encode()
    assert by_parse_telemetry(device_type, payload) == by_the_model(device_type, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1e999, "energy_kwh": 1, "power_kw": 1}',
        b'{"ts": 1, "energy_kwh": NaN, "power_kw": 1}',
        b'{"ts": 1, "energy_kwh": 1, "power_kw": 1, "note": "\\ud800"}',
        b'{"ts": 1, "energy_kwh": 1, "energy_kwh": -1, "power_kw": 1}',
        b"[1, 2]",
        b"\xff",
    ],
)
def test_what_msgspec_cannot_read_is_left_to_the_model(payload: bytes) -> None:
    """Out-of-range numbers, JSON extensions, lone surrogates, repeated keys: the model rules."""
    assert by_parse_telemetry("smart_meter", payload) == by_the_model("smart_meter", payload)


def test_an_everyday_reading_takes_the_fast_path() -> None:
    """The readings the fleet sends every second never reach pydantic."""
    payload = (
        b'{"device_id": "m-1", "ts": "2026-11-20T18:41:56.000Z", "energy_kwh": 0.03, '
        b'"power_kw": 1.9, "voltage": 229.7, "current": 8.4, "battery_pct": 33.3, "seq": 7}'
    )
    fast = _fast_path("smart_meter", payload)
    assert fast is not None
    assert fast.ts == datetime(2026, 11, 20, 18, 41, 56, tzinfo=UTC)
    assert fast.extra == {"seq": 7}


# Rows a history file holds: mostly valid, every field one the models know.
rows = st.fixed_dictionaries(
    {
        "ts": st.sampled_from(["2026-11-22T09:20:00Z", "2026-11-22T10:20:00.9999+01:00", 1.8e9]),
        "energy_kwh": st.floats(0, 100_000) | st.sampled_from([-0.5, 100_001]),
        "power_kw": st.floats(0, 100_000),
    },
    optional={
        "voltage": st.floats(0, 1_000_000),
        "quality": st.sampled_from(["good", "estimated", ""]),
        "interval_s": st.floats(0, 31 * 86400 + 1),
    },
)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(sorted(PAYLOAD_MODELS)),
    rows | documents,
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)
@example("smart_meter", {"ts": 1.0, "energy_kwh": 1, "power_kw": 1}, float("nan"))
def test_a_vouched_document_reads_as_its_json_would(
    device_type: str, document: dict[str, object], odd: float
) -> None:
    """What a history row's document is vouched as equals what its JSON parses to; a
    document with extras, or with a NaN or an infinity anywhere, is not vouched for."""
    vouched = vouched_telemetry(device_type, dict(document))
    if vouched is not None:
        assert vouched == by_parse_telemetry(device_type, json.dumps(document).encode())
        assert vouched.extra is None
    for name in ("ts", "energy_kwh", "voltage"):
        assert vouched_telemetry(device_type, document | {name: odd}) is None
