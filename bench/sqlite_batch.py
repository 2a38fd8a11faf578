"""Where SQLite's time goes in one batch transaction, statement by statement.

    python -m bench.sqlite_batch [--batches 60] [--batch 5000] [--devices 1000]
                                 [--step-s 1] [--interval-s S]

Stores batches through the daemon's own steps (`storage.sqlite`: the registry upsert, the
month's inserts, their rollup delta and the four rollups, BEGIN IMMEDIATE to COMMIT) into a
fresh database made by `meterflow db upgrade`, on a connection set up as the daemon's, in
this thread. Each statement's CPU time (this thread's: what the daemon's SQLite thread
spends, GIL waits left out) is added to its kind. A PASSIVE checkpoint after each batch
stands in for the daemon's checkpointer and is timed apart. The first ten batches are left
out (caches, statement preparation). Prints microseconds per reading for each kind.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ingest import BIN
from storage import SQLiteOptions
from storage.checkpoints import WRITER_CHECKPOINT_PAGES
from storage.devices import sightings
from storage.records import Reading, by_month
from storage.sqlite import Stamps, Step, _commit, _inserts, _upsert_statement

WARM_UP = 10

# The first words of each statement a batch sends, and the name it is reported under.
KINDS = (
    ("BEGIN", "begin"),
    ("INSERT INTO iot_devices", "registry upsert"),
    ("SELECT coalesce(max(id)", "id mark"),
    ('INSERT INTO "energy_data_', "insert readings"),
    ("CREATE TEMP TABLE", "rollup delta table"),
    ("DELETE FROM temp.rollup_delta", "rollup delta table"),
    ("WITH RECURSIVE", "rollup delta (pieces)"),
    ("UPDATE temp.rollup_delta", "rollup delta prices"),
    ("INSERT INTO temp.rollup_delta_hourly", "rollup hourly delta"),
    ("INSERT INTO energy_15min", "rollup 15min"),
    ("INSERT INTO energy_hourly", "rollup hourly"),
    ("INSERT INTO energy_daily", "rollup daily"),
    ("INSERT INTO energy_monthly", "rollup monthly"),
    ("COMMIT", "commit"),
)
CHECKPOINT = "checkpoint (own thread in the daemon)"


class TimedConnection(sqlite3.Connection):
    """A connection that adds each statement's CPU time to `spent`, by kind."""

    spent: defaultdict[str, float]

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # noqa: ANN401
        started = time.thread_time()
        try:
            return super().execute(sql, parameters)
        finally:
            text = sql.lstrip()
            kind = next((name for words, name in KINDS if text.startswith(words)), "other")
            self.spent[kind] += time.thread_time() - started


def connect(path: Path) -> TimedConnection:
    # As `meterflow run` opens its writer's connection.
    options = replace(SQLiteOptions(), wal_autocheckpoint_pages=WRITER_CHECKPOINT_PAGES)
    db = sqlite3.connect(path, isolation_level=None, factory=TimedConnection)
    db.spent = defaultdict(float)
    for pragma in (
        "journal_mode=WAL",
        f"synchronous={options.synchronous}",
        f"wal_autocheckpoint={int(options.wal_autocheckpoint_pages)}",
        "foreign_keys=ON",
    ):
        db.execute(f"PRAGMA {pragma}")
    return db


def readings(
    first: int, count: int, devices: int, start: datetime, *, step_s: float, interval_s: float
) -> list[Reading]:
    """Each device's reading every `step_s` seconds; with `interval_s`, each covers that
    interval, as a counter's do (storage/counters.py)."""
    covers = timedelta(seconds=interval_s)
    return [
        Reading("bench", f"meter-{n % devices:05d}", "smart_meter", at, 0.01, 0.6, 230.0, 2.6,
                metadata={"seq": n}, interval_start=at - covers if interval_s else None)
        for n in range(first, first + count)
        for at in [start + timedelta(seconds=n // devices * step_s)]
    ]  # fmt: skip


def time_batches(
    path: Path, batches: int, size: int, devices: int, *, step_s: float, interval_s: float
) -> dict[str, float]:
    """CPU seconds of each kind of statement over the batches after the warm-up."""
    db = connect(path)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    checkpoint = 0.0
    for number in range(batches):
        if number == WARM_UP:
            db.spent.clear()
            checkpoint = 0.0
        batch = readings(number * size, size, devices, start, step_s=step_s, interval_s=interval_s)
        stamps = Stamps()
        now = datetime.now(UTC)
        steps: list[Step] = [_upsert_statement(sightings(batch), now, stamps)]
        steps.extend(_inserts(by_month(batch), now, stamps, priced=False))
        assert _commit(db, steps) == size
        started = time.thread_time()
        super(TimedConnection, db).execute("PRAGMA wal_checkpoint(PASSIVE)")
        checkpoint += time.thread_time() - started
    db.close()
    return {**db.spent, CHECKPOINT: checkpoint}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument(
        "--step-s",
        type=float,
        default=1.0,
        help="between a device's readings (900: a quarter-hourly history's rows)",
    )
    parser.add_argument(
        "--interval-s",
        type=float,
        default=0.0,
        help="each reading's energy covers this many seconds before it (0: no interval)",
    )
    args = parser.parse_args()
    measured = args.batch * (args.batches - WARM_UP)
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-") as scratch:
        path = Path(scratch) / "meterflow.db"
        for command in (["db", "upgrade"], ["partitions", "create", "--ahead", "1"]):
            subprocess.run(
                [str(BIN / "meterflow"), *command, "--db", f"sqlite:///{path}"],
                check=True, capture_output=True,
            )  # fmt: skip
        spent = time_batches(
            path,
            args.batches,
            args.batch,
            args.devices,
            step_s=args.step_s,
            interval_s=args.interval_s,
        )
    covering = f", each covering {args.interval_s:g} s" if args.interval_s else ""
    print(
        f"{measured:,} readings in batches of {args.batch:,} from {args.devices:,} devices, "
        f"each one every {args.step_s:g} s{covering}"
    )
    print("CPU us/reading, by statement")
    in_transaction = 0.0
    for name in dict.fromkeys([*(name for _, name in KINDS), "other", CHECKPOINT]):
        if name in spent:
            print(f"{name:38} {spent[name] * 1e6 / measured:6.2f}")
            in_transaction += spent[name] if name != CHECKPOINT else 0.0
    print(f"{'transaction total':38} {in_transaction * 1e6 / measured:6.2f}")


if __name__ == "__main__":
    main()
