"""Analysts' questions on 50 million readings: partitioned against one table, and the rollup.

    python -m bench.queries [--readings 50000000] [--devices 1000] [--months 12] [--keep DIR]

Generates a SQLite database with meterflow's own schema: `--months` monthly partitions
(written directly, with SQL loops inside SQLite, not through the daemon), the same rows in
one unpartitioned table `energy_single` with the same unique index, and the rollups filled
by the backfill statement (`energy_15min`; the coarser ones summed from it). Then times,
warm, with the same random picks for both layouts:

  Q1  one device, one day of raw readings                     (target: median < 10 ms)
  Q2  one device, daily totals for a month                     (target: median < 50 ms)
  Q3  all devices, monthly totals: raw rows against energy_monthly (target: >= 100x)
  Q4  one device, a month of local days, Berlin and Kolkata        (target: median < 50 ms)
  Q5  all devices together, one local day, Berlin and Kolkata      (target: median < 500 ms)

and prints medians, the partitioned/single ratio (target <= 1.10) and the rollup speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME, Month, month_of_table, months_back, source_for
from storage import BatchWriter, open_engine
from storage.energy import energy, local_span
from storage.owners import Ownership, whole
from storage.rollups import MEASURES, QUARTER_HOURLY, ROLLUPS, backfill_sql, sqlite_delta
from storage.tables import energy_partition

NEWEST = Month(2026, 10)
REPEATS = 50
# Every column but id: each partition numbers its own rows.
COLUMN_NAMES = [c.name for c in energy_partition("template").columns]
COLUMNS = ", ".join(name for name in COLUMN_NAMES if name != "id")


def create(path: Path, months: list[Month]) -> None:
    """meterflow's schema, every partition, and the single table beside them."""

    async def go() -> None:
        url = f"sqlite:///{path}"
        engine = open_engine(url)
        async with BatchWriter(engine, url=url) as writer:
            await writer.ensure_partitions(months)
        await engine.dispose()

    asyncio.run(go())
    with closing(sqlite3.connect(path)) as conn:
        single = energy_partition("energy_single")
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415
        from sqlalchemy.schema import CreateTable  # noqa: PLC0415

        conn.execute(str(CreateTable(single).compile(dialect=sqlite.dialect())))
        conn.commit()


def generate(path: Path, months: list[Month], devices: int, per_device_month: int) -> int:
    """Readings at even intervals for every device and month, in key order (fast inserts)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO iot_devices (device_id, device_type, user_id, status, created_at, "
            "updated_at) VALUES (?, 'smart_meter', ?, 'active', '2025-01-01', '2025-01-01')",
            [(f"m-{d:04d}", f"u-{d % 100:03d}") for d in range(devices)],
        )
        conn.execute("COMMIT")
        total = 0
        for month in months:
            seconds = (month.end - month.start).total_seconds()
            step = seconds / per_device_month
            start = month.start.strftime("%Y-%m-%d %H:%M:%S")
            conn.execute("BEGIN")
            for d in range(devices):
                conn.execute(
                    f"INSERT INTO {month.table_name} (user_id, device_id, data_type, "
                    "energy_amount, instantaneous_power, voltage, recorded_at, quality, "
                    "created_at) "
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                    "SELECT ?, ?, 'consumption', 0.01 + (i % 7) * 0.005, 0.5 + (i % 13) * 0.25, "
                    "230.0, strftime('%Y-%m-%d %H:%M:%f', ?, '+' || (i * ?) || ' seconds'), "
                    "'good', CURRENT_TIMESTAMP FROM n",
                    (per_device_month - 1, f"u-{d % 100:03d}", f"m-{d:04d}", start, step),
                )
            conn.execute(
                f"INSERT INTO energy_single ({COLUMNS}) SELECT {COLUMNS} FROM {month.table_name}"
            )
            conn.execute("COMMIT")
            total += devices * per_device_month
            print(f"  {month}: {total:,} readings", flush=True)
        conn.execute("BEGIN")
        everything = {"start": "0001-01-01", "end": "9999-12-31"}
        quarters = QUARTER_HOURLY.sqlite_bucket("quarter_hour")
        conn.execute(backfill_sql(QUARTER_HOURLY, sqlite_delta(BASE_NAME), quarters), everything)
        # The readings here cover no intervals: the coarser rollups are sums of quarter hours.
        for rollup in ROLLUPS[1:]:
            conn.execute(
                f"INSERT INTO {rollup.table} (device_id, data_type, {rollup.bucket}, {MEASURES}) "
                f"SELECT device_id, data_type, {rollup.sqlite_bucket('quarter_hour')}, "
                "sum(energy_kwh), max(power_max), sum(power_sum), sum(power_count), "
                "sum(readings) FROM energy_15min GROUP BY 1, 2, 3"
            )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        return total


Query = tuple[str, tuple[object, ...]]
Pick = tuple[str, Month, int]  # device, month, day of the month (0-based)
# Where rows come from for [start, end): a table, the view, or the pruned partitions.
Source = Callable[[datetime, datetime], str]


def median_ms(conn: sqlite3.Connection, queries: list[Query]) -> float:
    times = []
    for sql, args in queries:
        started = time.perf_counter()
        conn.execute(sql, args).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def one_day(source: Source, picks: list[Pick]) -> list[Query]:
    queries: list[Query] = []
    for device, month, day in picks:
        start = month.start + timedelta(days=day)
        end = start + timedelta(days=1)
        sql = (f"SELECT recorded_at, energy_amount, instantaneous_power FROM {source(start, end)} "
               "WHERE device_id = ? AND data_type = 'consumption' "
               "AND recorded_at >= ? AND recorded_at < ?")  # fmt: skip
        queries.append((sql, (device, text(start), text(end))))
    return queries


def month_by_day(source: Source, picks: list[Pick]) -> list[Query]:
    return [
        (f"SELECT date(recorded_at), sum(energy_amount), avg(instantaneous_power), "
         f"max(instantaneous_power) FROM {source(m.start, m.end)} WHERE device_id = ? "
         "AND data_type = 'consumption' AND recorded_at >= ? AND recorded_at < ? GROUP BY 1",
         (d, text(m.start), text(m.end)))
        for d, m, _ in picks
    ]  # fmt: skip


def all_devices(source: Source, picks: list[Pick]) -> list[Query]:
    return [
        (f"SELECT device_id, sum(energy_amount) FROM {source(m.start, m.end)} "
         "WHERE recorded_at >= ? AND recorded_at < ? GROUP BY device_id",
         (text(m.start), text(m.end)))
        for _, m, _ in picks[:5]
    ]  # fmt: skip


def all_devices_rollup(picks: list[Pick]) -> list[Query]:
    return [
        ("SELECT device_id, sum(energy_kwh) FROM energy_monthly "
         "WHERE month >= ? AND month < ? GROUP BY device_id",
         (text(m.start), text(m.end)))
        for _, m, _ in picks[:5]
    ]  # fmt: skip


def measure(path: Path, picks: list[Pick]) -> dict[str, float]:
    results = {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA cache_size=-2000000")
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        months = [m for n in names if (m := month_of_table(n)) is not None]
        sources: dict[str, Source] = {
            "partitions": lambda start, end: source_for(start, end, months, COLUMN_NAMES),
            "view": lambda _start, _end: "energy_data",
            "single": lambda _start, _end: "energy_single",
        }
        questions = [("Q1 one device, one day", one_day), ("Q2 one device, month by day",
                     month_by_day), ("Q3 all devices, one month", all_devices)]  # fmt: skip
        for title, question in questions:
            batches = {name: question(source, picks) for name, source in sources.items()}
            if title.startswith("Q3"):
                batches["rollup"] = all_devices_rollup(picks)
            # Warm: every query once, so each layout is timed from memory, not from disk.
            for queries in batches.values():
                median_ms(conn, queries)
            for name, queries in batches.items():
                results[f"{title} | {name}"] = value = median_ms(conn, queries)
                print(f"{title:28} {name:10} median {value:9.2f} ms", flush=True)
    return results


ZONES = ("Europe/Berlin", "Asia/Kolkata")


def measure_local_days(path: Path, picks: list[Pick]) -> dict[str, float]:
    """Q4 and Q5 through `storage.energy.energy`, the code `meterflow query energy` runs,
    on the daemon's kind of connection (SQLAlchemy over aiosqlite)."""

    async def timed(
        conn: AsyncConnection,
        owned: list[Ownership] | None,
        zone: ZoneInfo,
        first: date,
        last: date,
    ) -> float:
        start, end = local_span(first, last, zone)
        started = time.perf_counter()
        await energy(conn, owned=owned, every="day", zone=zone, start=start, end=end)
        return (time.perf_counter() - started) * 1000

    async def go() -> dict[str, float]:
        results = {}
        engine = open_engine(f"sqlite:///{path}")
        async with engine.connect() as conn:
            for name in ZONES:
                zone = ZoneInfo(name)
                for title, cases in (
                    ("Q4 one device, a month of local days",
                     [(whole([d], *local_span(m.start.date(), m.end.date(), zone)), m.start.date(),
                       (m.end - timedelta(days=1)).date()) for d, m, _ in picks]),
                    ("Q5 all devices, one local day",
                     [(None, day, day) for _, m, n in picks
                      for day in [(m.start + timedelta(days=n)).date()]]),
                ):  # fmt: skip
                    for owned, first, last in cases:  # warm
                        await timed(conn, owned, zone, first, last)
                    times = [await timed(conn, owned, zone, first, last)
                             for owned, first, last in cases]  # fmt: skip
                    results[f"{title} | {name}"] = value = statistics.median(times)
                    print(f"{title:38} {name:14} median {value:9.2f} ms", flush=True)
        await engine.dispose()
        return results

    return asyncio.run(go())


def report(results: dict[str, float]) -> None:
    q1 = results["Q1 one device, one day | partitions"]
    q2 = results["Q2 one device, month by day | partitions"]
    print(f"Q1 partitioned median: {q1:.2f} ms   target < 10 ms")
    print(f"Q2 partitioned median: {q2:.2f} ms   target < 50 ms")
    for title in ("Q1 one device, one day", "Q2 one device, month by day",
                  "Q3 all devices, one month"):  # fmt: skip
        single = results[f"{title} | single"]
        pruned = results[f"{title} | partitions"] / single
        view = results[f"{title} | view"] / single
        print(f"{title}: partitions / single = {pruned:.2f} (target <= 1.10); "
              f"through the view {view:.2f}")  # fmt: skip
    speedup = (
        results["Q3 all devices, one month | partitions"]
        / results["Q3 all devices, one month | rollup"]
    )
    print(f"Q3 rollup speed-up over raw partitions: {speedup:,.0f}x   target >= 100x")
    for name in ZONES:
        q4 = results[f"Q4 one device, a month of local days | {name}"]
        q5 = results[f"Q5 all devices, one local day | {name}"]
        print(f"{name}: Q4 median {q4:.2f} ms (target < 50 ms), "
              f"Q5 median {q5:.2f} ms (target < 500 ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=50_000_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="Keep (or reuse) the database in this directory.")
    args = parser.parse_args()
    months = sorted(months_back(NEWEST, n) for n in range(args.months))
    per_device_month = max(1, args.readings // (args.devices * args.months))
    directory = args.keep or Path(tempfile.mkdtemp(prefix="meterflow-bench-queries-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "meterflow.db"
    if not path.exists():
        print(f"generating {args.devices:,} devices x {args.months} months x "
              f"{per_device_month:,} readings into {path}", flush=True)  # fmt: skip
        started = time.perf_counter()
        create(path, months)
        total = generate(path, months, args.devices, per_device_month)
        elapsed = time.perf_counter() - started
        print(f"generated {total:,} readings in {elapsed:.0f} s "
              f"({total / elapsed:,.0f}/s), {path.stat().st_size / 2**30:.1f} GiB")  # fmt: skip
    rng = random.Random(7)
    picks = [
        (f"m-{rng.randrange(args.devices):04d}", month, rng.randrange(28))
        for month in (rng.choice(months) for _ in range(REPEATS))
    ]
    report({**measure(path, picks), **measure_local_days(path, picks)})
    if not args.keep:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


if __name__ == "__main__":
    main()
