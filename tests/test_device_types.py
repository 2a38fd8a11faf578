"""Device types beyond meters and panels: batteries, inverters, EV chargers, heat pumps.

A battery's state of charge is a measurement stored with its readings, never the
registry's battery level (a wireless device's own battery). What a battery charged is
consumption, what it gave back production, and the totals say exactly that.

Frames of other families, and where they come from:
- evcc publishes one plain value per topic (docs.evcc.io, "MQTT API"):
  `evcc/site/battery/power` in W, positive = discharge; `evcc/site/battery/soc` in %;
  `evcc/loadpoints/<id>/chargePower` in W, `.../chargedEnergy` the session's Wh (back to
  0 for each session); `evcc/loadpoints/1/vehicleSoc` as third-party evcc presets name it.
- Victron GX: `N/<portal id>/system/0/Dc/Battery/Soc` gives `{"value":84.5}`
  (tomer-w/ha-victron-mqtt#58); the system's /Dc/Battery/Power is positive while the
  battery charges, negative while it discharges (Victron's D-Bus documentation,
  com.victronenergy.system).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ingest.decode import Router
from ingest.settings import GenericField
from meterflow.publisher import Publisher
from meterflow.settings import load_settings
from storage import DeadLetter, Reading
from tests.helpers import make_settings, query, recent, router_for, running_daemon, wait_until
from tests.mosquitto import Mosquitto

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TS = "2026-11-30T11:59:00Z"
PORTAL = "e0ff50a097c0"

EVCC_BATTERY: dict[str, Any] = {
    "name": "evcc_battery",
    "topics": ["evcc/{device_id}/battery/{field}"],
    "device_type": "battery_storage",
    "fields": {
        "power": {"measure": "power", "unit": "W", "positive_is_production": True},
        "soc": {"measure": "state_of_charge", "unit": "%"},
    },
}
EVCC_LOADPOINT: dict[str, Any] = {
    "name": "evcc_loadpoint",
    "topics": ["evcc/loadpoints/{device_id}/{field}"],
    "device_type": "ev_charger",
    "fields": {
        "chargePower": {"measure": "power", "unit": "W"},
        "chargedEnergy": {"measure": "energy", "unit": "Wh", "cumulative": True},
        "vehicleSoc": {"measure": "state_of_charge", "unit": "%"},
    },
}
VICTRON_BATTERY: dict[str, Any] = {
    "name": "victron_battery",
    "topics": ["N/{device_id*}/Dc/Battery/{field}"],
    "device_type": "battery_storage",
    "value_path": "value",
    "fields": {
        "Soc": {"measure": "state_of_charge", "unit": "%"},
        "Power": {"measure": "power", "unit": "W", "negative_is_production": True},
    },
}


def router(*families: dict[str, Any]) -> Router:
    names = ["canonical", *(family["name"] for family in families)]
    return router_for(load_settings(None, **{"decoders.enabled": names,
                                             "decoders.generic": list(families)}))  # fmt: skip


def canonical(device_type: str, **fields: object) -> list[Reading | DeadLetter]:
    document = {"ts": TS, "energy_kwh": 0.1, "power_kw": 0.4} | fields
    decoded = router().decode(
        f"meterflow/{device_type}/d-1/telemetry", json.dumps(document).encode(), NOW
    )
    assert all(isinstance(item, Reading | DeadLetter) for item in decoded)
    return list(decoded)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device_type", "data_type"),
    [
        ("battery_storage", "consumption"),
        ("inverter", "production"),
        ("ev_charger", "consumption"),
        ("heat_pump", "consumption"),
    ],
)
def test_each_new_type_is_a_canonical_topic_with_its_data_type(
    device_type: str, data_type: str
) -> None:
    """meterflow/<type>/<id>/telemetry for every type; the energy's direction is the type's."""
    [reading] = canonical(device_type, voltage=230.0)
    assert isinstance(reading, Reading)
    assert (reading.device_type, reading.data_type, reading.energy_kwh) == (
        device_type, data_type, 0.1
    )  # fmt: skip


def test_a_battery_message_is_what_it_charged_and_what_it_gave_back() -> None:
    """Charge is consumption, discharge a second reading of its own, production; the state
    of charge goes with the reading, not into the battery level."""
    charge, discharge = canonical(
        "battery_storage", discharge_energy_kwh=0.3, discharge_power_kw=1.2, state_of_charge=64.5
    )
    assert isinstance(charge, Reading)
    assert isinstance(discharge, Reading)
    assert (charge.data_type, charge.energy_kwh, charge.power_kw) == ("consumption", 0.1, 0.4)
    assert (charge.state_of_charge, charge.battery_pct) == (64.5, None)
    assert (discharge.data_type, discharge.energy_kwh, discharge.power_kw) == (
        "production", 0.3, 1.2
    )  # fmt: skip
    assert discharge.recorded_at == charge.recorded_at


@pytest.mark.parametrize(
    ("device_type", "fields", "reason"),
    [
        ("battery_storage", {"state_of_charge": 101}, "state_of_charge: Input should be less"),
        ("ev_charger", {"state_of_charge": -1}, "state_of_charge: Input should be greater"),
        ("battery_storage", {"discharge_energy_kwh": -0.1}, "discharge_energy_kwh: Input"),
        ("battery_storage", {"state_of_charge": "64"}, "state_of_charge: Input should be a"),
    ],
)
def test_an_impossible_state_of_charge_or_discharge_is_a_dead_letter_naming_it(
    device_type: str, fields: dict[str, object], reason: str
) -> None:
    [letter] = canonical(device_type, **fields)
    assert isinstance(letter, DeadLetter)
    assert letter.reason.startswith(reason), letter.reason


def test_a_type_without_a_state_of_charge_keeps_one_sent_as_metadata() -> None:
    """Only batteries and EV chargers have the field; a heat pump's is an extra, kept."""
    [reading] = canonical("heat_pump", state_of_charge=50)
    assert isinstance(reading, Reading)
    assert (reading.state_of_charge, reading.metadata) == (None, {"state_of_charge": 50})
    [reading] = canonical("ev_charger", state_of_charge=50)
    assert isinstance(reading, Reading)
    assert (reading.state_of_charge, reading.metadata) == (50.0, None)


@pytest.mark.parametrize(
    ("family", "topic", "payload", "expected"),
    [
        (EVCC_BATTERY, "evcc/site/battery/power", b"1500", ("production", "power_kw", 1.5)),
        (EVCC_BATTERY, "evcc/site/battery/power", b"-800", ("consumption", "power_kw", 0.8)),
        (EVCC_BATTERY, "evcc/site/battery/soc", b"72", ("consumption", "state_of_charge", 72)),
        (EVCC_LOADPOINT, "evcc/loadpoints/1/chargePower", b"7400",
         ("consumption", "power_kw", 7.4)),
        (EVCC_LOADPOINT, "evcc/loadpoints/1/vehicleSoc", b"64",
         ("consumption", "state_of_charge", 64)),
        (VICTRON_BATTERY, f"N/{PORTAL}/system/0/Dc/Battery/Soc", b'{"value":84.5}',
         ("consumption", "state_of_charge", 84.5)),
        (VICTRON_BATTERY, f"N/{PORTAL}/system/0/Dc/Battery/Power", b'{"value":-245.6}',
         ("production", "power_kw", 0.2456)),
        (VICTRON_BATTERY, f"N/{PORTAL}/system/0/Dc/Battery/Power", b'{"value":512}',
         ("consumption", "power_kw", 0.512)),
    ],
)  # fmt: skip
def test_battery_and_charger_families_sign_and_measure_as_they_document(
    family: dict[str, Any], topic: str, payload: bytes, expected: tuple[str, str, float]
) -> None:
    """evcc's battery power is positive on discharge, Victron's negative: each configured
    as its documentation says, discharge is production; a state of charge is its own
    measure, never a battery level."""
    [reading] = router(family).decode(topic, payload, NOW)
    assert isinstance(reading, Reading)
    kind, measure, value = expected
    assert reading.data_type == kind
    assert getattr(reading, measure) == pytest.approx(value)
    assert reading.battery_pct is None


def test_a_charger_session_counter_starts_from_zero_each_session() -> None:
    """evcc's chargedEnergy goes back to 0 when a session starts: a reset, counted from zero
    by the writer (tests/test_counters.py), reaching it as a named counter."""
    [reading] = router(EVCC_LOADPOINT).decode("evcc/loadpoints/1/chargedEnergy", b"12300", NOW)
    assert isinstance(reading, Reading)
    assert (reading.counter, reading.counter_kwh, reading.energy_kwh) == (
        "chargedEnergy", 12.3, None
    )  # fmt: skip


def test_a_field_signed_both_ways_is_refused() -> None:
    with pytest.raises(ValidationError, match="set one of negative_is_production"):
        GenericField(
            measure="power", unit="W", negative_is_production=True, positive_is_production=True
        )
    with pytest.raises(ValidationError, match="positive_is_production is for a power"):
        GenericField(measure="state_of_charge", unit="%", positive_is_production=True)


@pytest.mark.mqtt
async def test_new_types_end_to_end_with_totals_equal_to_what_they_measured(
    broker: Mosquitto, publisher: Publisher, db_path: Path, prefix: str
) -> None:
    """Canonical batteries, inverters, chargers and heat pumps and evcc's plain numbers,
    through a real broker into SQLite: each device registered with its type, states of
    charge stored with the readings and no battery level from them, and each day's
    consumption and production of the battery exactly what it charged and gave back."""
    evcc = EVCC_BATTERY | {"topics": [f"{prefix}/evcc/{{device_id}}/battery/{{field}}"]}
    settings = make_settings(broker.url, db_path, prefix, **{
        "decoders.enabled": ["canonical", "evcc_battery"], "decoders.generic": [evcc],
    })  # fmt: skip
    start = recent(3 * 3600).replace(minute=0, second=0, microsecond=0)
    cycles = [(0.5, 0.0, 40.0), (0.7, 0.0, 55.0), (0.0, 0.4, 47.5), (0.1, 0.9, 30.0)]
    frames: list[tuple[str, dict[str, Any] | bytes]] = [
        (f"{prefix}/battery_storage/b-1/telemetry", {
            "ts": (start + timedelta(minutes=15 * i)).isoformat(), "energy_kwh": charged,
            "power_kw": charged * 4, "discharge_energy_kwh": given, "discharge_power_kw": given * 4,
            "state_of_charge": soc, "interval_s": 900,
        })
        for i, (charged, given, soc) in enumerate(cycles)
    ]  # fmt: skip
    frames += [
        (f"{prefix}/inverter/inv-1/telemetry",
         {"ts": start.isoformat(), "energy_kwh": 1.25, "power_kw": 5.0}),
        (f"{prefix}/ev_charger/ev-1/telemetry",
         {"ts": start.isoformat(), "energy_kwh": 2.75, "power_kw": 11.0, "state_of_charge": 61}),
        (f"{prefix}/heat_pump/hp-1/telemetry",
         {"ts": start.isoformat(), "energy_kwh": 0.6, "power_kw": 2.4, "battery_pct": 55}),
        (f"{prefix}/evcc/site/battery/power", b"1500"),
        (f"{prefix}/evcc/site/battery/soc", b"72"),
    ]  # fmt: skip
    async with running_daemon(settings) as daemon:
        for topic, document in frames:
            body = document if isinstance(document, bytes) else json.dumps(document).encode()
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.received == len(frames), what="every frame")
        # b-1: a charge and a discharge row per cycle (a discharge of 0 is a reading too);
        # three more devices; evcc's two values, one of each kind.
        await wait_until(lambda: daemon.stats.stored == 8 + 3 + 2, what="13 rows")
        assert daemon.stats.rejected.total() == 0

    assert query(db_path, "SELECT device_id, device_type, battery_level FROM iot_devices "
                          "ORDER BY device_id") == [
        ("b-1", "battery_storage", None), ("ev-1", "ev_charger", None),
        ("hp-1", "heat_pump", 55.0), ("inv-1", "inverter", None),
        ("site", "battery_storage", None),
    ]  # fmt: skip
    socs = query(
        db_path, "SELECT device_id, state_of_charge FROM energy_data WHERE state_of_charge > 0"
    )
    assert sorted(socs) == sorted(
        [("b-1", soc) for _, _, soc in cycles] + [("ev-1", 61.0), ("site", 72.0)]
    )
    # The totals, from the rollups, equal what the battery reported, and the raw rows.
    by_kind = dict(query(db_path, "SELECT data_type, sum(energy_kwh) FROM energy_daily "
                                  "WHERE device_id = 'b-1' GROUP BY data_type"))  # fmt: skip
    raw = dict(query(db_path, "SELECT data_type, sum(energy_amount) FROM energy_data "
                              "WHERE device_id = 'b-1' GROUP BY data_type"))  # fmt: skip
    charged = sum(c for c, _, _ in cycles)
    given = sum(g for _, g, _ in cycles)
    assert by_kind == pytest.approx({"consumption": charged, "production": given})
    assert raw == pytest.approx(by_kind)
    evcc_rows = query(
        db_path,
        "SELECT data_type, instantaneous_power, state_of_charge FROM energy_data "
        "WHERE device_id = 'site' ORDER BY data_type",
    )
    assert evcc_rows == [("consumption", None, 72.0), ("production", 1.5, None)]
