"""Self-consumption and self-sufficiency per home, from its devices' roles; golden figures
worked out by hand, with a grid meter, with a battery, and netted without a grid meter."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import BatchWriter, DataType, DeviceType, Reading, WriteBatch, open_engine
from storage.prices import Prices, record_rates
from storage.records import Role
from storage.registry import Registration, register
from tests.cli import meterflow
from tests.databases import Database

DAY = datetime(2026, 6, 15, tzinfo=UTC)


def shown_as(value: float) -> Any:
    """`value` as the command prints it: to six decimals."""
    return pytest.approx(value, abs=1e-6)


QUARTER = timedelta(minutes=15)


def quarters(device: str, kind: DeviceType, data_type: DataType, kwh: list[float],
             first: int) -> list[Reading]:  # fmt: skip
    """One reading per quarter hour from quarter `first` of the day, `kwh` each."""
    return [
        Reading(
            "t",
            device,
            kind,
            DAY + (first + i) * QUARTER + timedelta(minutes=5),
            energy,
            energy * 4,
            kind=data_type,
        )
        for i, energy in enumerate(kwh)
    ]


def home(database: Database, devices: list[tuple[str, DeviceType, str, Role | None]],
         readings: list[Reading], prices: Prices | None = None) -> None:  # fmt: skip
    """Register `devices` (id, type, owner, role) and store `readings`, priced by `prices`."""

    async def go() -> None:
        engine = open_engine(database.url)
        priced = prices is not None and prices.configured
        async with BatchWriter(engine, url=database.url, priced=priced) as writer:
            if prices is not None:
                async with engine.connect() as conn:
                    await record_rates(conn, prices, DAY.date())
            async with engine.connect() as conn, conn.begin():
                await register(conn, [
                    Registration(device, kind, user_id=user, role=role)
                    for device, kind, user, role in devices
                ], DAY)  # fmt: skip
            await writer.write(WriteBatch(readings))
        await engine.dispose()

    asyncio.run(go())


def balance(database: Database, user: str) -> dict[str, Any]:
    shown = meterflow("query", "self-consumption", "--db", database.url, "--user", user,
                      "--from", "2026-06-15", "--to", "2026-06-15", "--tz", "UTC",
                      "--format", "json")  # fmt: skip
    [row] = json.loads(shown.output)
    return row  # type: ignore[no-any-return]


def test_a_home_with_a_grid_meter_and_panels(database: Database) -> None:
    """Imported 10, exported 4, produced 6: self-consumed 2 of 6, 2 of the 12 used."""
    home(database, [("g-1", "smart_meter", "h-1", None), ("pv-1", "solar_panel", "h-1", None)],
         quarters("g-1", "smart_meter", "consumption", [1.0] * 10, 0)
         + quarters("g-1", "smart_meter", "production", [1.0] * 4, 48)
         + quarters("pv-1", "solar_panel", "production", [1.0] * 6, 40))  # fmt: skip
    row = balance(database, "h-1")
    assert row == {
        "user_id": "h-1", "imported_kwh": 10.0, "exported_kwh": 4.0, "produced_kwh": 6.0,
        "self_consumed_kwh": 2.0, "used_kwh": 12.0,
        "self_consumption_ratio": shown_as(1 / 3),
        "self_sufficiency_ratio": shown_as(1 / 6),
        "grid_metered": "yes",
    }  # fmt: skip


def test_a_battery_counts_for_the_home_both_ways(database: Database) -> None:
    """Panels 6, exported 1, the battery charged 3 and gave back 2.7, imported 7.3: the
    home used 12, made 5 of its own use, and drew 4.7 of the 12 from its own production."""
    home(database, [("g-2", "smart_meter", "h-2", None), ("pv-2", "solar_panel", "h-2", None),
                    ("b-2", "battery_storage", "h-2", None)],
         quarters("g-2", "smart_meter", "consumption", [0.73] * 10, 0)
         + quarters("g-2", "smart_meter", "production", [0.5] * 2, 50)
         + quarters("pv-2", "solar_panel", "production", [1.0] * 6, 40)
         + quarters("b-2", "battery_storage", "consumption", [1.0] * 3, 44)
         + quarters("b-2", "battery_storage", "production", [0.9] * 3, 76))  # fmt: skip
    row = balance(database, "h-2")
    assert (row["imported_kwh"], row["exported_kwh"], row["produced_kwh"]) == (
        shown_as(7.3), 1.0, 6.0
    )  # fmt: skip
    assert (row["self_consumed_kwh"], row["used_kwh"]) == (5.0, shown_as(12.0))
    assert row["self_consumption_ratio"] == shown_as(5 / 6)
    assert row["self_sufficiency_ratio"] == shown_as((12 - 7.3) / 12)


def test_without_a_grid_meter_import_and_export_are_netted_per_quarter_hour(
    database: Database,
) -> None:
    """A smart meter registered as a consumer (a submeter) and a panel: 1 kWh drawn in a
    dark quarter hour is imported; of 1 kWh produced while 0.2 was drawn, 0.8 is exported."""
    home(database, [("sm-3", "smart_meter", "h-3", "consumption"),
                    ("pv-3", "solar_panel", "h-3", None)],
         quarters("sm-3", "smart_meter", "consumption", [1.0, 0.2], 10)
         + quarters("pv-3", "solar_panel", "production", [1.0], 11))  # fmt: skip
    row = balance(database, "h-3")
    assert (row["imported_kwh"], row["exported_kwh"], row["produced_kwh"]) == (
        1.0, shown_as(0.8), 1.0
    )  # fmt: skip
    assert row["self_consumed_kwh"] == shown_as(0.2)
    assert row["self_sufficiency_ratio"] == shown_as(0.2 / 1.2)
    assert row["grid_metered"] == "no (netted per quarter hour)"


def test_a_users_energy_per_hour_is_their_homes_submeters_not_added(database: Database) -> None:
    """query energy --user: a heat pump's 2 kWh were in the grid meter's 3, so the home
    used 3 + 1 produced, not 6; the grid meter bought the panel from h-5 at 11:00, so the
    hour before it is netted: 0.5 drawn by the pump, 0.25 produced, 0.25 imported. The
    view says the same of the day."""
    home(database, [("g-5", "smart_meter", "h-4", None), ("hp-5", "heat_pump", "h-5", None),
                    ("pv-5", "solar_panel", "h-5", None)],
         quarters("g-5", "smart_meter", "consumption", [0.75] * 4, 44)
         + quarters("hp-5", "heat_pump", "consumption", [0.125] * 4 + [0.5] * 4, 40)
         + quarters("pv-5", "solar_panel", "production", [0.0625] * 4 + [0.25] * 4, 40)
         )  # fmt: skip

    async def sell() -> None:
        engine = open_engine(database.url)
        async with engine.connect() as conn, conn.begin():
            await register(conn, [Registration("g-5", "smart_meter", user_id="h-5")],
                           DAY + timedelta(hours=10, minutes=50))  # fmt: skip
        await engine.dispose()

    asyncio.run(sell())
    shown = meterflow("query", "energy", "--db", database.url, "--user", "h-5", "--every",
                      "hour", "--from", "2026-06-15", "--to", "2026-06-15", "--tz", "UTC",
                      "--format", "json")  # fmt: skip
    hours = {row["start"][11:16]: row for row in json.loads(shown.output)}
    assert hours["10:00"] == {
        "start": "2026-06-15T10:00:00+00:00", "consumption_kwh": 0.5, "production_kwh": 0.25,
        "imported_kwh": 0.25, "exported_kwh": 0.0, "peak_demand_kw": 0.25, "cost": None,
        "carbon_kg": None,
    }  # fmt: skip
    assert (hours["11:00"]["consumption_kwh"], hours["11:00"]["imported_kwh"]) == (4.0, 3.0)
    assert hours["11:00"]["peak_demand_kw"] == 3.0
    assert database.query(
        "SELECT consumption_kwh, production_kwh, net_kwh FROM user_energy_summary "
        "WHERE user_id = 'h-5'"
    ) == [(4.5, 1.25, 3.25)]
