"""`meterflow import`: history from CSV and Parquet through the live validation, counted
once however often it is imported and whatever live readings it overlaps."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.decode.router import Router
from ingest.history import HistoryFileError, RowDecoder
from ingest.history_process import (
    HEAD_ROWS,
    PIPE_ROWS,
    PROCESS_FROM_BYTES,
    DecodedBatch,
    DecodeJob,
    DecodingProcess,
    DecodingProcessError,
    decoded_batches,
    decoding,
)
from ingest.settings import DecodersSettings, IngestSettings
from meterflow.cli.history import BATCH_ROWS, IMPORT_CACHE_MIB, import_options
from meterflow.settings import load_settings
from storage import BatchWriter, DeadLetter, Reading, WriteBatch, open_engine
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


def test_a_large_file_is_decoded_in_a_process_and_stored_whole(
    database: Database, tmp_path: Path
) -> None:
    """A file past PROCESS_FROM_BYTES, more than a batch long, decoded in the import's
    decoding process: every good row stored once, every bad one a dead letter naming its
    line, and the daily totals those of the rows themselves."""
    devices, quarters = 40, 2_600
    rows = []
    for number in range(devices * quarters):
        quarter, device = divmod(number, devices)
        ts = (DAY + quarter * timedelta(minutes=15)).isoformat()
        rows.append(["smart_meter", f"m-{device}", ts, f"{(number % 97) / 1000:.3f}", "0.2",
                     "230.0", ""])  # fmt: skip
    bad_lines = {2 + 1_000, 2 + 51_234}  # the header is line 1
    for line in bad_lines:
        rows[line - 2][3] = "-1"
    history = write_csv(tmp_path / "history.csv", rows)
    assert history.stat().st_size >= PROCESS_FROM_BYTES
    assert len(rows) > BATCH_ROWS

    done = meterflow("import", str(history), "--db", database.url)
    good = len(rows) - len(bad_lines)
    assert f"{len(rows)} rows, {good} readings stored, 0 already there, 2 rejected" in done.output
    again = meterflow("import", str(history), "--db", database.url)
    assert f"0 readings stored, {good} already there, 2 rejected" in again.output

    reasons = sorted(reason for (reason,) in database.query("SELECT reason FROM dead_letters"))
    assert reasons == [
        f"history.csv line {line}: energy_kwh: Input should be greater than or equal to 0"
        for line in sorted(bad_lines)
    ]
    by_day: dict[str, float] = {}
    for row in rows:
        if row[3] != "-1":
            by_day[row[2][:10]] = by_day.get(row[2][:10], 0.0) + float(row[3])
    stored = database.query(
        "SELECT substr(CAST(day AS TEXT), 1, 10), sum(energy_kwh), sum(readings) "
        "FROM energy_daily GROUP BY 1 ORDER BY 1"
    )
    assert [day for day, _, _ in stored] == sorted(by_day)
    for day, energy, _ in stored:
        assert abs(energy - by_day[day]) < 1e-6, day
    assert sum(count for _, _, count in stored) == good


def test_the_imports_connection_keeps_its_pages_and_temporary_tables_in_memory(
    tmp_path: Path,
) -> None:
    """A batch's changed pages stay in the import's page cache until its commit, and its
    temporary tables off the disk; the rest is as configured."""
    url = f"sqlite:///{tmp_path / 'data.db'}"
    settings = load_settings(None, **{"storage.url": url, "storage.sqlite_busy_timeout_ms": 1234})

    async def pragmas() -> list[object]:
        engine = open_engine(url, import_options(settings.storage))
        async with engine.connect() as conn:
            found = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("cache_size", "temp_store", "busy_timeout", "synchronous")
            ]
        await engine.dispose()
        return found

    # A negative cache_size is in KiB; temp_store 2 is MEMORY, synchronous 2 FULL.
    assert asyncio.run(pragmas()) == [-IMPORT_CACHE_MIB * 1024, 2, 1234, 2]


def test_batches_from_the_decoding_process_equal_those_decoded_in_place(tmp_path: Path) -> None:
    """What crosses from the process is what decoding gives: readings with their extra
    fields (metadata), a battery's two readings, dead letters with their payloads."""
    history = tmp_path / "history.csv"
    with history.open("w", newline="") as target:
        out = csv.writer(target)
        out.writerow(["device_type", "device_id", "ts", "energy_kwh", "power_kw", "interval_s",
                      "discharge_energy_kwh", "site"])  # fmt: skip
        for day in range(1, 4):
            ts = f"2026-05-0{day}T00:10:00Z"
            out.writerows([
                ["smart_meter", "m-1", ts, "0.25", "1.0", "900", "", "barn"],
                ["battery_storage", "b-1", ts, "0.5", "2.0", "", "0.25", ""],
                ["smart_meter", "m-1", ts, "-1", "1.0", "", "", ""],
            ])  # fmt: skip
    job = _job(history)

    async def from_process() -> list[DecodedBatch]:
        async with DecodingProcess(job) as batches:
            return [batch async for batch in batches]

    crossed = asyncio.run(from_process())
    assert crossed == list(decoded_batches(job))
    [batch] = crossed
    assert (batch.rows, batch.rejected, len(batch.readings), len(batch.letters)) == (9, 3, 9, 3)
    assert batch.readings[0].metadata == {"site": "barn"}
    assert batch.letters[0].payload.startswith(b"{")


def test_a_large_files_batches_grow_to_the_jobs_size_and_hold_every_row_once(
    tmp_path: Path,
) -> None:
    """A large file's head is decoded beside the process, which sends the rest at most
    PIPE_ROWS rows at a time; the importer's batches are one piece, then twice as many
    rows each time up to the job's batch_rows, and together they are the rows decoded in
    place, in order, bad rows and all."""
    rows = (GOOD + BAD) * (2 * HEAD_ROWS // 6 + PIPE_ROWS)
    history = write_csv(tmp_path / "history.csv", rows)
    assert history.stat().st_size >= PROCESS_FROM_BYTES
    job = dataclasses.replace(_job(history), batch_rows=4 * PIPE_ROWS)

    async def decoded() -> list[DecodedBatch]:
        async with decoding(job) as batches:
            return [batch async for batch in batches]

    crossed = asyncio.run(decoded())
    [in_place] = decoded_batches(dataclasses.replace(job, batch_rows=len(rows)))
    whole, rest = divmod(len(rows) - 7 * PIPE_ROWS, 4 * PIPE_ROWS)
    assert [batch.rows for batch in crossed] == [
        *(PIPE_ROWS, 2 * PIPE_ROWS, 4 * PIPE_ROWS),
        *[4 * PIPE_ROWS] * whole,
        *([rest] if rest else []),
    ]
    assert [reading for batch in crossed for reading in batch.readings] == in_place.readings
    assert [letter for batch in crossed for letter in batch.letters] == in_place.letters
    assert sum(batch.rejected for batch in crossed) == in_place.rejected == len(rows) // 2


def test_every_row_decodes_as_the_message_it_stands_for() -> None:
    """A row gives the readings and dead letters its canonical JSON gives on its topic,
    whichever path it takes: a device whose first row is refused, rows after a device's
    topic is settled (good, refused, out of time, with extras or a NaN), bad topics."""
    now = datetime(2026, 5, 10, tzinfo=UTC)
    ts = "2026-05-04T00:10:00Z"
    rows: list[dict[str, object]] = [
        {"device_type": "smart_meter", "device_id": "m-1", "ts": ts, "energy_kwh": -1.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": ts, "energy_kwh": 0.25,
         "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": "2026-05-04T00:25:00+02:00",
         "energy_kwh": 0.5, "power_kw": 2.0, "voltage": 231.5, "quality": "estimated",
         "interval_s": 900.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": ts, "energy_kwh": 1e9,
         "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": "2026-06-04T00:10:00Z",
         "energy_kwh": 0.25, "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": "2019-05-04T00:10:00Z",
         "energy_kwh": 0.25, "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": 1777860000.0,
         "energy_kwh": 0.25, "power_kw": 1.0, "site": "barn"},
        {"device_type": "smart_meter", "device_id": "m-1", "ts": ts, "energy_kwh": 0.25,
         "power_kw": float("nan")},
        {"device_type": "battery_storage", "device_id": "b-1", "ts": ts, "energy_kwh": 0.5,
         "power_kw": 2.0, "discharge_energy_kwh": 0.25, "state_of_charge": 50.0},
        {"device_type": "wind_turbine", "device_id": "w-1", "ts": ts, "energy_kwh": 1.0,
         "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "a/b", "ts": ts, "energy_kwh": 1.0,
         "power_kw": 1.0},
        {"device_type": "smart_meter", "device_id": "", "ts": ts, "energy_kwh": 1.0,
         "power_kw": 1.0},
    ]  # fmt: skip
    limits = IngestSettings()
    router = Router.configured(DecodersSettings(enabled=["canonical"]), limits, "meterflow")
    decoder = RowDecoder("meterflow", limits, "h.csv")
    for line, row in enumerate(rows * 2, start=2):
        document = dict(row)
        topic = f"meterflow/{document.pop('device_type')}/{document.pop('device_id')}/telemetry"
        message = router.decode(topic, msgspec.json.encode(document), now)
        readings, letters = decoder.decode(line, dict(row), now)
        assert list(readings) == [item for item in message if isinstance(item, Reading)]
        assert list(letters) == [
            dataclasses.replace(item, reason=f"h.csv line {line}: {item.reason}")
            for item in message
            if isinstance(item, DeadLetter)
        ]


def test_a_file_the_decoding_process_cannot_read_is_one_error(tmp_path: Path) -> None:
    """A HistoryFileError in the process is raised in the importer with its words."""
    broken = tmp_path / "broken.csv"
    broken.write_text("device,when,kwh\nm-1,2026-05-04T00:10:00Z,1\n")

    async def decode_all() -> None:
        async with DecodingProcess(_job(broken)) as batches:
            async for _ in batches:
                pass

    with pytest.raises(HistoryFileError, match="missing columns device_type, device_id, ts"):
        asyncio.run(decode_all())


def test_a_decoding_process_that_dies_stops_the_import_with_an_error(tmp_path: Path) -> None:
    """Killed, the process is missed at the next batch: an error, never a wait forever."""
    history = write_csv(tmp_path / "history.csv", GOOD * 200_000)

    async def decode_after_kill() -> None:
        async with DecodingProcess(_job(history)) as batches:
            [decoder] = [p for p in multiprocessing.active_children()
                         if p.name == "meterflow-import-decoder"]  # fmt: skip
            assert decoder.pid is not None
            os.kill(decoder.pid, signal.SIGKILL)
            async for _ in batches:
                pass

    with pytest.raises(DecodingProcessError, match="exit code -9"):
        asyncio.run(decode_after_kill())


def _job(path: Path) -> DecodeJob:
    return DecodeJob(path, None, "meterflow", IngestSettings(), datetime.now(UTC), 1_000)
