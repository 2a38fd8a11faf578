"""Which indexes a monthly partition should carry: insert speed against query speed.

    python -m bench.indexes [--rows 500000] [--devices 1000]

Inserts the same month of readings, in 5,000-row batches through the daemon's json_each
statement, into a partition with each candidate index layout, then times the two queries
analysts run most: one device's day of raw readings, and all devices' totals for one day.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.records import READING_COLUMNS
from storage.sqlite import sqlite_timestamp

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
INSERT = (
    f"INSERT INTO t ({', '.join(READING_COLUMNS)}, validated, created_at) SELECT "
    + ", ".join(f"value ->> {i}" for i in range(len(READING_COLUMNS)))
    + ", 1, '2026-03-01 00:00:00.000000' FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
)
START = datetime(2026, 3, 1, tzinfo=UTC)


def batches(rows: int, devices: int, size: int = 5000) -> list[str]:
    step = timedelta(seconds=(31 * 86400) // (rows // devices))
    out, batch = [], []
    for n in range(rows):
        at = START + step * (n // devices)
        device = f"meter-{n % devices:05d}"
        batch.append(
            [None, device, "consumption", 0.01, 0.6, 230.0, 2.6, None, None, None,
             sqlite_timestamp(at), "good", None]
        )  # fmt: skip
        if len(batch) == size:
            out.append(json.dumps(batch))
            batch = []
    if batch:
        out.append(json.dumps(batch))
    return out


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
    payloads = batches(args.rows, args.devices)
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
            for ddl in (TABLE, *indexes):
                conn.execute(ddl)
            started = time.perf_counter()
            for payload in payloads:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(INSERT, (payload,))
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
