"""Where PostgreSQL's time goes in one batch transaction, statement by statement.

    python -m bench.pg_batch [--batches 20] [--batch 5000] [--devices 1000]

Stores batches through the daemon's own code (`PostgresBackend.store_readings`: registry
upsert, COPY into staging, the move into `energy_data` that also adds to the three
rollups, commit) on two fresh databases made by `meterflow db upgrade`: one with the
current schema, one turned back into schema version 3's shape (a foreign key from
readings to devices, rollup indexes covering energy_kwh, full rollup pages). Statements
are timed by SQLAlchemy's cursor events; what is left of each batch's time is COPY, BEGIN
and COMMIT. Prints microseconds per reading for each, side by side. The first two batches
of each are left out (plans, caches).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from bench.ingest import BIN
from storage import open_engine
from storage.backend import PlainBatch
from storage.devices import sightings
from storage.postgres import PostgresBackend
from storage.records import Reading, by_month
from storage.rollups import ROLLUPS
from tests.databases import PostgresDatabase, fresh_postgres

WARM_UP = 2


def as_version_3(database: PostgresDatabase) -> None:
    database.execute(
        "ALTER TABLE energy_data ADD CONSTRAINT fk_energy_data_device "
        "FOREIGN KEY (device_id) REFERENCES iot_devices (device_id)"
    )
    for rollup in ROLLUPS:
        index = f"ix_{rollup.table}_{rollup.bucket}"
        database.execute(f"DROP INDEX {index}")
        database.execute(
            f"CREATE INDEX {index} ON {rollup.table} "
            f"({rollup.bucket}, device_id, data_type, energy_kwh)"
        )
        database.execute(f"ALTER TABLE {rollup.table} RESET (fillfactor)")


@contextmanager
def prepared(shape: str) -> Iterator[PostgresDatabase]:
    with fresh_postgres() as database:
        for command in (["db", "upgrade"], ["partitions", "create", "--ahead", "1"]):
            subprocess.run(
                [str(BIN / "meterflow"), *command, "--db", database.url],
                check=True, capture_output=True,
            )  # fmt: skip
        if shape == "v3":
            as_version_3(database)
        yield database


def readings(first: int, count: int, devices: int, start: datetime) -> list[Reading]:
    return [
        Reading("bench", f"meter-{n % devices:05d}", "smart_meter",
                start + timedelta(seconds=n // devices), 0.01, 0.6, 230.0)
        for n in range(first, first + count)
    ]  # fmt: skip


# The first words of each statement a batch sends, and the name it is reported under.
STATEMENTS = (
    ("INSERT INTO iot_devices", "registry upsert"),
    ("CREATE TEMP TABLE", "staging table (if not exists)"),
    ("WITH staged", "move + rollups"),
)
REST = "COPY, BEGIN, COMMIT"


async def time_batches(url: str, batches: int, size: int, devices: int) -> defaultdict[str, float]:
    """Seconds spent in each statement over the batches after the warm-up."""
    backend = PostgresBackend()
    engine = open_engine(url)
    spent: defaultdict[str, float] = defaultdict(float)
    started: list[float] = []
    counting = False

    def before(*_: Any) -> None:  # noqa: ANN401
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *__: Any) -> None:  # noqa: ANN401
        name = next((n for words, n in STATEMENTS if statement.lstrip().startswith(words)), None)
        if name is not None and counting:
            spent[name] += time.perf_counter() - started[-1]

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    try:
        async with engine.connect() as conn:
            for number in range(batches):
                counting = number >= WARM_UP
                batch = readings(number * size, size, devices, start)
                begun = time.perf_counter()
                plain = PlainBatch(by_month(batch), sightings(batch), datetime.now(UTC))
                stored = await backend.store_readings(conn, plain)
                assert await stored == size
                if counting:
                    spent[REST] += time.perf_counter() - begun
    finally:
        await engine.dispose()
    spent[REST] -= sum(seconds for name, seconds in spent.items() if name != REST)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--devices", type=int, default=1_000)
    args = parser.parse_args()
    measured = args.batch * (args.batches - WARM_UP)
    results: dict[str, defaultdict[str, float]] = {}
    for shape in ("v3", "current"):
        with prepared(shape) as database:
            results[shape] = asyncio.run(
                time_batches(database.url, args.batches, args.batch, args.devices)
            )
    print(f"{measured:,} readings in batches of {args.batch:,} from {args.devices:,} devices")
    print(f"{'us/reading':30} {'schema v3':>10} {'current':>10}")
    names = [name for _, name in STATEMENTS] + [REST]
    for name in [*names, "total"]:
        old, new = (
            (sum(results[s].values()) if name == "total" else results[s][name]) * 1e6 / measured
            for s in ("v3", "current")
        )
        print(f"{name:30} {old:10.1f} {new:10.1f}")


if __name__ == "__main__":
    main()
