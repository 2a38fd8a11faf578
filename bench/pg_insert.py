"""How to insert a batch into PostgreSQL: unnest arrays, multi-row VALUES, or COPY + INSERT.

    python -m bench.pg_insert [--rows 200000] [--batch 5000]

Each method inserts the same readings, batch by batch, idempotently (ON CONFLICT DO
NOTHING) into a fresh copy of meterflow's partitioned `energy_data`, and the figures are
printed side by side. meterflow uses the fastest here, COPY (storage/postgres.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from partitions import Month, partition_ddl
from storage import energy_parent, iot_devices
from tests.databases import POSTGRES_ADMIN_URL

COLUMNS = ("user_id", "device_id", "data_type", "energy_amount", "instantaneous_power",
           "voltage", "current", "battery_pct", "irradiance_wm2", "panel_temp_c",
           "recorded_at", "quality", "metadata")  # fmt: skip
Row = tuple[object, ...]
Method = Callable[[asyncpg.Connection, list[Row]], Awaitable[None]]


def rows(count: int) -> list[Row]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        (None, f"meter-{n % 1000:04d}", "consumption", 0.01, 0.6, 230.0, 2.6, None, None, None,
         start + timedelta(seconds=n // 1000), "good", None)
        for n in range(count)
    ]  # fmt: skip


UNNEST = f"""
INSERT INTO energy_data ({", ".join(COLUMNS)}, validated, created_at)
SELECT u, d, t, e, p, v, c, b, i, pt, r, q, m::jsonb, true, $14
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[],
            $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::timestamptz[],
            $12::text[], $13::text[]) AS x(u, d, t, e, p, v, c, b, i, pt, r, q, m)
ON CONFLICT DO NOTHING
"""


async def by_unnest(conn: asyncpg.Connection, batch: list[Row]) -> None:
    columns = [list(column) for column in zip(*batch, strict=True)]
    await conn.execute(UNNEST, *columns, datetime.now(UTC))


async def by_values(conn: asyncpg.Connection, batch: list[Row]) -> None:
    # The protocol allows 32,767 parameters per statement: 13 columns, so 2,000 rows.
    for start in range(0, len(batch), 2000):
        chunk = batch[start : start + 2000]
        places = ", ".join(
            "(" + ", ".join(f"${i * 13 + j + 1}" for j in range(13)) + ", true, now())"
            for i in range(len(chunk))
        )
        await conn.execute(
            f"INSERT INTO energy_data ({', '.join(COLUMNS)}, validated, created_at) "
            f"VALUES {places} ON CONFLICT DO NOTHING",
            *(value for row in chunk for value in row),
        )


async def by_copy(conn: asyncpg.Connection, batch: list[Row]) -> None:
    async with conn.transaction():
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS staging ON COMMIT DELETE ROWS AS "
            f"SELECT {', '.join(COLUMNS)} FROM energy_data WITH NO DATA"
        )
        await conn.copy_records_to_table("staging", records=batch, columns=COLUMNS)
        await conn.execute(
            f"INSERT INTO energy_data ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
            "FROM staging ON CONFLICT DO NOTHING"
        )


async def measure(dsn: str, method: Method, data: list[Row], batch: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE energy_data")
        started = time.perf_counter()
        for start in range(0, len(data), batch):
            await method(conn, data[start : start + batch])
        elapsed = time.perf_counter() - started
        stored = await conn.fetchval("SELECT count(*) FROM energy_data")
        assert stored == len(data), (method.__name__, stored)
    finally:
        await conn.close()
    return len(data) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    name = f"meterflow_bench_{uuid.uuid4().hex[:8]}"
    dsn = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in (iot_devices, energy_parent()):
                dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
                conn.execute(str(CreateTable(table).compile(dialect=dialect)).encode())
            conn.execute(partition_ddl(Month(2026, 3)).encode())
            conn.execute(b"INSERT INTO iot_devices (device_id, device_type) SELECT"
                         b" 'meter-' || lpad(n::text, 4, '0'), 'smart_meter'"
                         b" FROM generate_series(0, 999) AS n")  # fmt: skip
        data = rows(args.rows)
        print(f"{args.rows:,} readings in batches of {args.batch:,}, ON CONFLICT DO NOTHING")
        for method in (by_unnest, by_values, by_copy):
            rate = asyncio.run(measure(dsn, method, data, args.batch))
            print(f"{method.__name__:10} {rate:10,.0f} rows/s")
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
