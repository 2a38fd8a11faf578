"""Analysts' questions on a small known dataset across a month boundary, on both backends."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from storage import BatchWriter, Reading, WriteBatch, open_engine, registry
from storage.registry import Registration
from tests.cli import meterflow
from tests.databases import Database


def at(day: int, hour: int, minute: int = 0) -> datetime:
    month = 3 if day == 31 else 4
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


METER = [
    Reading("t", "m-1", "smart_meter", at(31, 22), 0.5, 2.0),
    Reading("t", "m-1", "smart_meter", at(31, 23, 30), 0.25, 4.0),
    Reading("t", "m-1", "smart_meter", at(1, 0, 15), 1.0, 1.0),
    Reading("t", "m-1", "smart_meter", at(1, 10), 0.5, None),
]
PANEL = [
    Reading("t", "pv-1", "solar_panel", at(31, 12), 2.0, 5.0),
    Reading("t", "pv-1", "solar_panel", at(1, 12), 3.0, 6.0),
]
OTHER_USER = [Reading("t", "m-2", "smart_meter", at(1, 9), 7.0, 1.0)]


def load(database: Database) -> None:
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await registry.register(
                    conn,
                    [Registration("m-1", "smart_meter", "u-1"),
                     Registration("pv-1", "solar_panel", "u-1"),
                     Registration("m-2", "smart_meter", "u-2")],
                    datetime.now(UTC),
                )  # fmt: skip
            await writer.write(WriteBatch([*METER, *PANEL, *OTHER_USER]))
            await writer.write(WriteBatch(METER[1:3]))  # redelivered: must not count twice
        await engine.dispose()

    asyncio.run(go())


def test_devices_daily_gives_each_days_energy_average_and_peak_power(
    database: Database,
) -> None:
    """m-1 on March 31st and April 1st: 0.75 and 1.5 kWh, averages 3.0 and 1.0 kW."""
    load(database)
    result = meterflow(
        "query", "devices-daily", "--device", "m-1", "--from", "2026-03-31", "--to",
        "2026-04-01", "--format", "json", "--db", database.url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"day": "2026-03-31", "energy_kwh": 0.75, "average_power_kw": 3.0,
         "peak_power_kw": 4.0, "readings": 2},
        {"day": "2026-04-01", "energy_kwh": 1.5, "average_power_kw": 1.0,
         "peak_power_kw": 1.0, "readings": 2},
    ]  # fmt: skip


def test_balance_gives_what_a_users_home_used_produced_and_drew(database: Database) -> None:
    """u-1's grid meter drew 2.25 kWh and fed nothing in, so the 5.0 their panels produced
    were used at home: 7.25 used, net 2.25 from the grid. m-2 is someone else's."""
    load(database)
    result = meterflow(
        "query", "balance", "--user", "u-1", "--days", "400", "--format", "json",
        "--db", database.url,
    )  # fmt: skip
    assert json.loads(result.output) == [
        {"user_id": "u-1", "days": 400, "devices": 2, "consumption_kwh": 7.25,
         "production_kwh": 5.0, "net_kwh": 2.25},
    ]  # fmt: skip
    recent = meterflow("query", "balance", "--user", "u-1", "--days", "30", "--format", "csv",
                       "--db", database.url)  # fmt: skip
    assert recent.output.splitlines()[1] == "u-1,30,2,0,0,0"


def test_the_user_energy_summary_view_has_a_row_per_user_and_day(database: Database) -> None:
    """The seed design's view, over the rollup, per UTC day: what u-1's home used (its
    grid meter's draw and what its panels produced), produced, and drew from the grid."""
    load(database)
    rows = database.query(
        "SELECT user_id, CAST(day AS TEXT), consumption_kwh, production_kwh, net_kwh "
        "FROM user_energy_summary ORDER BY user_id, day"
    )
    assert rows == [
        ("u-1", "2026-03-31", 2.75, 2.0, 0.75),
        ("u-1", "2026-04-01", 4.5, 3.0, 1.5),
        ("u-2", "2026-04-01", 7.0, 0.0, 7.0),
    ]
