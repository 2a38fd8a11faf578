"""`meterflow import`: history from CSV and Parquet through the live validation, counted
once however often it is imported and whatever live readings it overlaps."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage import BatchWriter, Reading, WriteBatch, open_engine
from tests.cli import meterflow
from tests.databases import Database

DAY = datetime(2026, 5, 4, tzinfo=UTC)
HEADER = ["device_type", "device_id", "ts", "energy_kwh", "power_kw", "voltage", "quality"]
GOOD = [
    ["smart_meter", "m-1", "2026-05-04T00:10:00Z", "0.25", "1.0", "231.5", ""],
    ["smart_meter", "m-1", "2026-05-04T00:25:00+00:00", "0.5", "2.0", "", "estimated"],
    ["solar_panel", "pv-1", "1777860000", "0.125", "0.5", "", ""],  # epoch seconds
]
BAD = [
    ["smart_meter", "m-1", "2026-05-04T00:40:00Z", "-1", "1.0", "", ""],
    ["wind_turbine", "w-1", "2026-05-04T00:40:00Z", "1", "1.0", "", ""],
    ["smart_meter", "m-1", "yesterday", "1", "1.0", "", ""],
]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as target:
        csv.writer(target).writerows([HEADER, *rows])
    return path


def test_rows_are_stored_rejected_with_their_line_and_never_twice(
    database: Database, tmp_path: Path
) -> None:
    """Good rows are readings, bad ones dead letters naming the file's line; importing the
    file again stores no reading and no dead letter twice."""
    history = write_csv(tmp_path / "history.csv", [GOOD[0], BAD[0], GOOD[1], BAD[1], GOOD[2],
                                                   BAD[2]])  # fmt: skip
    first = meterflow("import", str(history), "--db", database.url)
    assert "6 rows, 3 readings stored, 0 already there, 3 rejected" in first.output
    again = meterflow("import", str(history), "--db", database.url)
    assert "6 rows, 0 readings stored, 3 already there, 3 rejected" in again.output
    assert database.query(
        "SELECT device_id, energy_amount, voltage, quality FROM energy_data ORDER BY 1, 2"
    ) == [("m-1", 0.25, 231.5, "good"), ("m-1", 0.5, None, "estimated"),
          ("pv-1", 0.125, None, "good")]  # fmt: skip
    reasons = sorted(reason for (reason,) in database.query("SELECT reason FROM dead_letters"))
    assert reasons == [
        "history.csv line 3: energy_kwh: Input should be greater than or equal to 0",
        "history.csv line 5: unknown device type 'wind_turbine': expected one of "
        "['battery_storage', 'ev_charger', 'heat_pump', 'inverter', 'smart_meter', "
        "'solar_panel']",
        "history.csv line 7: ts: 'yesterday' is not ISO 8601",
    ]
    assert database.query("SELECT sum(energy_kwh) FROM energy_daily") == [(0.875,)]


def test_history_overlapping_live_readings_counts_each_once(
    database: Database, tmp_path: Path
) -> None:
    """Readings the daemon stored and the same readings in a later import: one row each,
    and the rollups count each once."""

    async def live() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            at = datetime(2026, 5, 4, 0, 10, tzinfo=UTC)
            await writer.write(WriteBatch([Reading("t", "m-1", "smart_meter", at, 0.25, 1.0)]))
        await engine.dispose()

    asyncio.run(live())
    history = write_csv(tmp_path / "history.csv", GOOD)
    assert "1 already there" in meterflow("import", str(history), "--db", database.url).output
    assert database.query("SELECT count(*) FROM energy_data") == [(3,)]
    assert database.query("SELECT sum(energy_kwh), sum(readings) FROM energy_15min") == [(0.875, 3)]


def test_a_utility_export_puts_each_quarter_hours_energy_in_its_quarter_hour(
    database: Database, tmp_path: Path
) -> None:
    """start,end,kwh for one meter: each row's energy lands in [start, end), with its
    average power."""
    export = tmp_path / "utility.csv"
    rows = [[(DAY + i * timedelta(minutes=15)).isoformat(),
             (DAY + (i + 1) * timedelta(minutes=15)).isoformat(), f"{0.1 * (i + 1):.1f}"]
            for i in range(4)]  # fmt: skip
    with export.open("w", newline="") as target:
        csv.writer(target).writerows([["start", "end", "kwh"], *rows])
    done = meterflow("import", str(export), "--device", "meter-7", "--db", database.url)
    assert "4 rows, 4 readings stored" in done.output
    quarters = database.query(
        "SELECT energy_kwh FROM energy_15min WHERE device_id = 'meter-7' ORDER BY quarter_hour"
    )
    assert [round(kwh, 9) for (kwh,) in quarters] == [0.1, 0.2, 0.3, 0.4, 0.0]
    powers = database.query(
        "SELECT instantaneous_power FROM energy_data WHERE device_id = 'meter-7' "
        "ORDER BY recorded_at"
    )
    assert [round(kw, 9) for (kw,) in powers] == [0.4, 0.8, 1.2, 1.6]


def test_a_parquet_file_imports_as_its_csv_would(database: Database, tmp_path: Path) -> None:
    """Parquet columns with native types (a timestamp column, floats, nulls) give the same
    readings as the CSV."""
    table = pa.table({
        "device_type": ["smart_meter", "smart_meter", "solar_panel"],
        "device_id": ["m-1", "m-1", "pv-1"],
        "ts": [datetime(2026, 5, 4, 0, 10, tzinfo=UTC), datetime(2026, 5, 4, 0, 25, tzinfo=UTC),
               datetime.fromtimestamp(1777860000, UTC)],
        "energy_kwh": [0.25, 0.5, 0.125],
        "power_kw": [1.0, 2.0, 0.5],
        "voltage": [231.5, None, None],
    })  # fmt: skip
    history = tmp_path / "history.parquet"
    pq.write_table(table, history)
    done = meterflow("import", str(history), "--db", database.url)
    assert "3 rows, 3 readings stored" in done.output, done.output
    assert database.query("SELECT sum(energy_kwh) FROM energy_daily") == [(0.875,)]
