"""Which indexes a monthly partition should carry: insert speed against query speed.

    python -m bench.indexes [--rows 500000] [--devices 1000]

Inserts the same month of readings, in 5,000-row batches through the daemon's insert
statements, into a partition with each candidate index layout, then times the two queries
analysts run most: one device's day of raw readings, and all devices' totals for one day.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.records import ROW_COLUMNS, Reading, Row
from storage.rollups import sqlite_insert_sql
from storage.sqlite import batch_rows, chunks, sqlite_timestamp

LAYOUTS = {
    "device-first unique key (chosen)": [
        "CREATE UNIQUE INDEX k ON t (device_id, data_type, recorded_at)",
    ],
    "time-first unique key": [
        "CREATE UNIQUE INDEX k ON t (recorded_at, device_id, data_type)",
    ],
    "unique key + time + device indexes": [
        "CREATE UNIQUE INDEX k ON t (device_id, data_type, recorded_at)",
        "CREATE INDEX i_time ON t (recorded_at)",
        "CREATE INDEX i_device ON t (device_id)",
    ],
}
TABLE = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT, device_id TEXT NOT NULL,"
    " data_type TEXT NOT NULL, energy_amount REAL NOT NULL, instantaneous_power REAL NOT NULL,"
    " voltage REAL, current REAL, battery_pct REAL, irradiance_wm2 REAL, panel_temp_c REAL,"
    " recorded_at TEXT NOT NULL, quality TEXT NOT NULL, validated INTEGER NOT NULL,"
    " metadata TEXT, created_at TEXT NOT NULL)"
)
# The daemon's insert looks each reading's owner up in the registry.
DEVICES = "CREATE TABLE iot_devices (device_id TEXT PRIMARY KEY, user_id TEXT)"
CREATED_AT = "2026-03-01 00:00:00.000000"
START = datetime(2026, 3, 1, tzinfo=UTC)


def batches(rows: int, devices: int, size: int = 5000) -> list[list[Row]]:
    step = timedelta(seconds=(31 * 86400) // (rows // devices))
    readings = [
        Reading("bench", f"meter-{n % devices:05d}", "smart_meter",
                START + step * (n // devices), 0.01, 0.6, 230.0, 2.6)
        for n in range(rows)
    ]  # fmt: skip
    return [batch_rows(readings[first : first + size]) for first in range(0, rows, size)]


def insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    for chunk in chunks(rows):
        values = itertools.chain.from_iterable(chunk)
        columns = ROW_COLUMNS[: len(chunk[0])]
        conn.execute(sqlite_insert_sql("t", len(chunk), columns), [CREATED_AT, *values])


def timed_median(conn: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> float:
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        conn.execute(sql, params).fetchall()
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--devices", type=int, default=1_000)
    args = parser.parse_args()
    batched = batches(args.rows, args.devices)
    day = (
        sqlite_timestamp(START + timedelta(days=10)),
        sqlite_timestamp(START + timedelta(days=11)),
    )
    print(f"{args.rows:,} readings from {args.devices:,} devices in one month")
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, indexes) in enumerate(LAYOUTS.items()):
            conn = sqlite3.connect(Path(scratch) / f"{number}.db", isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for ddl in (TABLE, DEVICES, *indexes):
                conn.execute(ddl)
            started = time.perf_counter()
            for rows in batched:
                conn.execute("BEGIN IMMEDIATE")
                insert(conn, rows)
                conn.execute("COMMIT")
            rate = args.rows / (time.perf_counter() - started)
            conn.execute("ANALYZE")
            one_device = timed_median(
                conn,
                "SELECT recorded_at, energy_amount FROM t WHERE device_id = ? AND data_type = ?"
                " AND recorded_at >= ? AND recorded_at < ?",
                ("meter-00042", "consumption", *day),
            )
            all_devices = timed_median(
                conn,
                "SELECT device_id, sum(energy_amount) FROM t WHERE recorded_at >= ?"
                " AND recorded_at < ? GROUP BY device_id",
                day,
            )
            conn.close()
            print(f"{name:36} insert {rate:9,.0f} rows/s   one device-day {one_device:7.2f} ms"
                  f"   all devices' day {all_devices:8.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
