"""The PostgreSQL backend: `energy_data` range-partitioned by month; batches by COPY.

A batch is copied into a temporary staging table, then moved into `energy_data` with one
INSERT ... SELECT ... ON CONFLICT DO NOTHING, so every row is still checked against the
unique key, which COPY alone cannot do. It is the fastest of the ways `python -m
bench.pg_insert` compares (unnest over column arrays, multi-row VALUES); the figures are in
docs/performance.md.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy import Table, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import (
    BASE_NAME,
    Month,
    NativePartitions,
    PostgresPartitionStore,
    default_rows,
    repair,
)
from storage.backend import PlainBatch, Rows
from storage.backup import backup_postgres, daemons_connected, restore_postgres
from storage.devices import DeviceSighting, registry_update
from storage.engine import SQLiteOptions
from storage.errors import QueryError
from storage.faults import crash_point
from storage.readonly import query_postgres
from storage.records import READING_COLUMNS, ROW_COLUMNS, Reading, reading_rows
from storage.rollups import (
    DAILY,
    HOURLY,
    MONTHLY,
    PIECE_COLUMNS,
    READINGS_IN_WINDOW,
    ROLLUPS,
    Rollup,
    owner_at,
    postgres_delta_ctes,
    postgres_rollup_ctes,
    priced_delta,
    priced_sql,
    reading_costs,
)
from storage.tables import DEVICE_TYPE_CHECK, ROLLUP_FILLFACTOR, energy_parent, metadata
from storage.verify import Difference

# Held by a transaction that reads or changes the schema version, so that daemons starting
# together on an empty database create the schema once.
_SCHEMA_LOCK = 0x6D666C77  # "mflw"

_ROW_LIST = ", ".join(ROW_COLUMNS)
_STAGED_ROW_LIST = ", ".join(f"staged.{name}" for name in ROW_COLUMNS)
_STAGING = "meterflow_staging"
# Per session; ON COMMIT DELETE ROWS empties it at the end of every transaction.
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS "
    f"SELECT {_ROW_LIST} FROM {BASE_NAME} WITH NO DATA"
)
# Moving rather than copying keeps the staging table empty between the savepoints of a
# batch that is stored row by row. Each row's owner at its time is looked up here,
# which saves the batch a round trip. The rows actually inserted (RETURNING skips
# conflicts) are added to the rollups in the same statement, which returns how many were
# new.


@functools.cache
def _move_staged(priced: bool) -> str:  # noqa: FBT001
    owner = owner_at("staged.device_id", "staged.recorded_at")
    columns = f"{', '.join(READING_COLUMNS)}, created_at"
    if not priced:
        head = f"""staged AS (DELETE FROM {_STAGING} RETURNING *),
inserted AS (
    INSERT INTO {BASE_NAME} ({columns})
    SELECT {owner}, {_ROW_LIST}, $1
    FROM staged ON CONFLICT DO NOTHING
    RETURNING {PIECE_COLUMNS}
),
{postgres_delta_ctes("inserted")},
{priced_delta(priced)}"""
    else:
        # Each reading goes in with its cost: the staged readings' quarter hours are priced
        # first (`units`, one lookup per device and quarter hour), a reading's pieces add
        # up its cost, and the delta of those inserted takes the same prices.
        head = f"""removed AS (DELETE FROM {_STAGING} RETURNING *),
staged AS (SELECT removed.*, row_number() OVER () AS id FROM removed),
{postgres_delta_ctes("staged", prefix="staged_")},
units AS ({priced_sql("staged_delta", "device_id, data_type, quarter_hour")}),
costs AS ({reading_costs("staged_pieces", "units")}),
inserted AS (
    INSERT INTO {BASE_NAME} ({columns}, cost, carbon_footprint)
    SELECT {owner}, {_STAGED_ROW_LIST}, $1, costs.cost, costs.carbon
    FROM staged LEFT JOIN costs ON costs.id = staged.id ON CONFLICT DO NOTHING
    RETURNING {PIECE_COLUMNS}
),
{postgres_delta_ctes("inserted")},
priced AS (
    SELECT delta.*, delta.energy_kwh * u.price AS cost,
        delta.energy_kwh * u.g_per_kwh / 1000.0 AS carbon, u.price, u.g_per_kwh
    FROM delta LEFT JOIN units AS u ON u.device_id = delta.device_id
        AND u.data_type = delta.data_type AND u.quarter_hour = delta.quarter_hour
)"""
    return f"""
WITH {head},
{postgres_rollup_ctes()}
SELECT count(*) FROM inserted
"""


_UPSERT_DEVICES = f"""
INSERT INTO iot_devices (device_id, device_type, last_seen, battery_level, battery_updated_at,
    status, created_at, updated_at)
SELECT d, t, l, b, bu, 'active', $6, $6
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::timestamptz[])
    AS x(d, t, l, b, bu)
{registry_update("greatest(iot_devices.last_seen, excluded.last_seen)")}
"""


class _AsTheyAre(dict[datetime, datetime]):
    """asyncpg binds datetimes as they are: each time is its own row value."""

    def __missing__(self, moment: datetime) -> datetime:
        return moment


_AS_THEY_ARE = _AsTheyAre()


class PostgresBackend:
    def __init__(self, *, priced: bool = False) -> None:
        self._partitions = NativePartitions()
        self._priced = priced

    @property
    def partitions(self) -> NativePartitions:
        return self._partitions

    async def lock_schema(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")

    async def create_tables(self, conn: AsyncConnection) -> None:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(energy_parent().create, checkfirst=True)

    async def relax_measures(self, conn: AsyncConnection) -> None:
        # On the parent, it reaches every partition.
        await conn.exec_driver_sql(
            f"ALTER TABLE {BASE_NAME} ALTER COLUMN energy_amount DROP NOT NULL, "
            "ALTER COLUMN instantaneous_power DROP NOT NULL"
        )

    async def lean_writes(self, conn: AsyncConnection) -> None:
        """No foreign key from readings to devices, and rollups that can be updated in
        place (see `storage.tables`). Databases created at version 4 already have this
        shape; the statements change nothing there."""
        await conn.exec_driver_sql(
            f"ALTER TABLE {BASE_NAME} DROP CONSTRAINT IF EXISTS fk_{BASE_NAME}_device"
        )
        # energy_15min came later, in this shape.
        for rollup in (HOURLY, DAILY, MONTHLY):
            index = f"ix_{rollup.table}_{rollup.bucket}"
            await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
            await conn.exec_driver_sql(
                f"CREATE INDEX {index} ON {rollup.table} ({rollup.bucket}, device_id, data_type)"
            )
            # Applies to pages written from now on; existing full pages fill up no further.
            await conn.exec_driver_sql(
                f"ALTER TABLE {rollup.table} SET (fillfactor = {ROLLUP_FILLFACTOR})"
            )

    async def cover_rollups(self, conn: AsyncConnection) -> None:
        """Nothing to do: PostgreSQL's rollup indexes leave the measures out, so that a
        batch updates its rollup rows in place (see `storage.tables`)."""

    async def add_reading_columns(self, conn: AsyncConnection) -> None:
        """On the parent, they reach every partition."""
        present = await conn.run_sync(
            lambda sync: {column["name"] for column in inspect(sync).get_columns(BASE_NAME)}
        )
        for column in energy_parent().columns:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                await conn.exec_driver_sql(
                    f'ALTER TABLE {BASE_NAME} ADD COLUMN "{column.name}" {kind}'
                )

    async def widen_device_types(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(
            "ALTER TABLE iot_devices DROP CONSTRAINT IF EXISTS ck_iot_devices_type, "
            f"ADD CONSTRAINT ck_iot_devices_type CHECK ({DEVICE_TYPE_CHECK})"
        )

    async def prepare(self, conn: AsyncConnection) -> None:
        await self._partitions.load(conn)

    def rollup_bucket(self, rollup: Rollup, column: str) -> str:
        return rollup.postgres_bucket(column)

    def rollup_delta(self, source: str, where: str = "") -> str:
        return f"WITH {postgres_delta_ctes(source, where)}"

    async def readings_in_window(
        self, conn: AsyncConnection, start: datetime
    ) -> list[tuple[str, str]]:
        # The parent: the window's own condition prunes the partitions.
        return [(BASE_NAME, f"WITH {postgres_delta_ctes(BASE_NAME, READINGS_IN_WINDOW)}")]

    def local_date(self, column: str, offset_s: str) -> str:
        return f"(({column} AT TIME ZONE 'UTC') + make_interval(secs => {offset_s}))::date"

    def shifted_text(self, column: str, offset_minutes: int, length: int) -> str:
        shifted = f"({column} AT TIME ZONE 'UTC') + interval '{offset_minutes} minutes'"
        return f"substr(to_char({shifted}, 'YYYY-MM-DD HH24:MI'), 1, {length})"

    def readings_table(self, month: Month) -> Table:
        # The parent: PostgreSQL prunes its partitions to the month by itself.
        return energy_parent()

    async def lock_rollups(self, conn: AsyncConnection) -> None:
        # SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock a batch's rollup
        # update takes, and with itself; readers go on.
        tables = ", ".join(rollup.table for rollup in ROLLUPS)
        await conn.exec_driver_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")

    async def move_stray_rows(self, conn: AsyncConnection) -> dict[Month, int]:
        return await repair(conn)

    def partition_store(
        self, engine: AsyncEngine, url: str, options: SQLiteOptions | None = None
    ) -> PostgresPartitionStore:
        return PostgresPartitionStore(engine)

    def backup(self, url: str, directory: Path, keep: int, *, key: str | None) -> Path:
        return backup_postgres(url, directory, keep=keep)

    def restore(self, backup: Path, url: str, *, force: bool, key: str | None) -> str:
        in_use = asyncio.run(daemons_connected(url)) > 0
        restore_postgres(backup, url, in_use=in_use, force=force)
        return "into the PostgreSQL database"

    def archived_differences(
        self, url: str, archive: Path, month: Month, *, key: str | None
    ) -> list[Difference]:
        raise QueryError(
            f"{archive.name} is a CSV file PostgreSQL cannot query: restore the month with "
            "`meterflow partitions restore FILE` to check it"
        )

    def read_only_query(
        self, url: str, sql: str, archives: Sequence[Path] | None, *, key: str | None
    ) -> Rows:
        if archives is not None:
            raise QueryError(
                "PostgreSQL archives are CSV files: restore the month with "
                "`meterflow partitions restore FILE`, or read the file with DuckDB or pandas"
            )
        return asyncio.run(query_postgres(url, sql))

    async def stray_rows(self, conn: AsyncConnection) -> int:
        return await default_rows(conn)

    async def registered_owners(
        self, conn: AsyncConnection, device_ids: Sequence[str]
    ) -> dict[str, str | None]:
        result = await conn.exec_driver_sql(
            "SELECT device_id, user_id FROM iot_devices WHERE device_id = ANY($1::text[])",
            (list(device_ids),),
        )
        return {row.device_id: row.user_id for row in result}

    async def insert_readings(
        self, conn: AsyncConnection, readings: Sequence[Reading], now: datetime
    ) -> int:
        """Owners are looked up by the insert itself (`_move_staged`)."""
        if not readings:
            return 0
        records = reading_rows(readings, _AS_THEY_ARE)
        # Through SQLAlchemy first, so the transaction is open before COPY uses the
        # driver's connection underneath it.
        await conn.exec_driver_sql(_CREATE_STAGING)
        raw = await conn.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        await driver.copy_records_to_table(_STAGING, records=records, columns=ROW_COLUMNS)
        result = await conn.exec_driver_sql(_move_staged(self._priced), (now,))
        return int(result.scalar_one())

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        if not seen:
            return
        # One lock order for every daemon, so concurrent upserts cannot deadlock.
        ordered = sorted(seen, key=lambda s: s.device_id)
        await conn.exec_driver_sql(
            _UPSERT_DEVICES,
            (
                [s.device_id for s in ordered],
                [s.device_type for s in ordered],
                [s.last_seen for s in ordered],
                [s.battery_level for s in ordered],
                [s.battery_updated_at for s in ordered],
                now,
            ),
        )

    async def store_readings(self, conn: AsyncConnection, batch: PlainBatch) -> asyncio.Future[int]:
        """Stored before this returns, statement by statement: each is a round trip to the
        server however it is sent, and one connection runs one transaction at a time."""
        # One COPY for every month: the parent table routes rows to their partitions.
        readings = [reading for group in batch.months.values() for reading in group]
        async with conn.begin():
            await self.upsert_devices(conn, batch.seen, batch.now)
            inserted = await self.insert_readings(conn, readings, batch.now)
            crash_point("during-commit")
        done = asyncio.get_running_loop().create_future()
        done.set_result(inserted)
        return done
