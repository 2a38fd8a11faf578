"""Schema versions, and bringing a database to the version this meterflow needs.

A database records its version in `meterflow_schema`. `meterflow run` creates the schema on
an empty database, and refuses one whose version is older (or newer) than its own, naming
the command that fixes it; `meterflow db upgrade` applies what is missing, in order, all in
one transaction: a step that fails leaves the database at the version it had.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME
from storage.analytics import SUMMARY_VIEW, summary_view_ddl
from storage.backend import Backend
from storage.errors import SchemaVersionError
from storage.rollups import DAILY, HOURLY, MONTHLY, ROLLUPS, backfill_sql
from storage.tables import (
    ROLLUP_FILLFACTOR,
    energy_daily,
    energy_hourly,
    energy_monthly,
    meter_counters,
)

Migration = Callable[[AsyncConnection, Backend], Awaitable[None]]

_versions = Table(
    "meterflow_schema",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def _initial(conn: AsyncConnection, backend: Backend) -> None:
    await backend.create_tables(conn)


async def _counters_and_partial_readings(conn: AsyncConnection, backend: Backend) -> None:
    """Version 2: `meter_counters`, and readings that may lack energy or power."""
    await conn.run_sync(meter_counters.create, checkfirst=True)
    await backend.relax_measures(conn)


async def _rollups(conn: AsyncConnection, backend: Backend) -> None:
    """Version 3: the hourly, daily and monthly rollups, filled from the readings already
    stored, and the `user_energy_summary` view."""
    rollups = ((HOURLY, energy_hourly), (DAILY, energy_daily), (MONTHLY, energy_monthly))
    for rollup, table in rollups:
        await conn.run_sync(table.create, checkfirst=True)
        if not await conn.scalar(select(func.count()).select_from(table)):
            await conn.exec_driver_sql(backfill_sql(rollup, conn.dialect.name))
    await conn.exec_driver_sql(f"DROP VIEW IF EXISTS {SUMMARY_VIEW}")
    await conn.exec_driver_sql(summary_view_ddl(conn.dialect.name))


async def _lean_postgres_writes(conn: AsyncConnection, backend: Backend) -> None:
    """Version 4, PostgreSQL only: no foreign key from readings to devices, and rollups
    that can be updated in place (see `storage.tables`). Databases created at version 4
    already have this shape; the statements change nothing there."""
    if conn.dialect.name != "postgresql":
        return
    await conn.exec_driver_sql(
        f"ALTER TABLE {BASE_NAME} DROP CONSTRAINT IF EXISTS fk_{BASE_NAME}_device"
    )
    for rollup in ROLLUPS:
        index = f"ix_{rollup.table}_{rollup.bucket}"
        await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
        await conn.exec_driver_sql(
            f"CREATE INDEX {index} ON {rollup.table} ({rollup.bucket}, device_id, data_type)"
        )
        # Applies to pages written from now on; existing full pages fill up no further.
        await conn.exec_driver_sql(
            f"ALTER TABLE {rollup.table} SET (fillfactor = {ROLLUP_FILLFACTOR})"
        )


MIGRATIONS: dict[int, Migration] = {
    1: _initial,
    2: _counters_and_partial_readings,
    3: _rollups,
    4: _lean_postgres_writes,
}
SCHEMA_VERSION = max(MIGRATIONS)


async def _version(conn: AsyncConnection) -> int | None:
    names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    if _versions.name not in names:
        return 0 if "iot_devices" in names else None
    version = await conn.scalar(select(func.max(_versions.c.version)))
    return int(version or 0)


async def _apply(conn: AsyncConnection, backend: Backend, current: int) -> list[int]:
    applied = []
    for version in sorted(v for v in MIGRATIONS if v > current):
        await MIGRATIONS[version](conn, backend)
        await conn.run_sync(_versions.create, checkfirst=True)
        await conn.execute(_versions.insert().values(version=version))
        applied.append(version)
    return applied


async def schema_version(conn: AsyncConnection) -> int | None:
    """The database's schema version; None for a database without meterflow's tables."""
    async with conn.begin():
        return await _version(conn)


async def upgrade(conn: AsyncConnection, backend: Backend) -> list[int]:
    """Apply every migration the database lacks, in one transaction; return their versions."""
    async with conn.begin():
        await backend.lock_schema(conn)
        return await _apply(conn, backend, await _version(conn) or 0)


async def require_current(conn: AsyncConnection, backend: Backend, url: str) -> None:
    """Create the schema on an empty database; refuse any other version than ours.

    Version check and creation share one transaction under the schema lock, so daemons
    starting together on an empty database create it once.
    """
    async with conn.begin():
        await backend.lock_schema(conn)
        version = await _version(conn)
        if version is None:
            await _apply(conn, backend, 0)
        elif version != SCHEMA_VERSION:
            raise SchemaVersionError(version, SCHEMA_VERSION, url)
        await backend.prepare(conn)
