"""Self-consumption and self-sufficiency per home, from its devices' roles; golden figures
worked out by hand, with a grid meter, with a battery, and netted without a grid meter."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import BatchWriter, DataType, DeviceType, Reading, WriteBatch, open_engine
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
         readings: list[Reading]) -> None:  # fmt: skip
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
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
