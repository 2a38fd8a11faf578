"""Schema versions, and bringing a database to the version this meterflow needs.

A database records its version in `meterflow_schema`. `meterflow run` creates the schema on
an empty database, and refuses one whose version is older (or newer) than its own, naming
the command that fixes it; `meterflow db upgrade` applies what is missing, in order, all in
one transaction: a step that fails leaves the database at the version it had.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME
from storage.analytics import SUMMARY_VIEW, summary_view_ddl
from storage.backend import Schema
from storage.errors import SchemaVersionError
from storage.owners import BEGINNING
from storage.rollups import ALL_TIME, ROLLUPS, backfill_sql, in_window
from storage.tables import (
    audit_log,
    carbon_intensity,
    device_owners,
    dynamic_prices,
    energy_15min,
    energy_daily,
    energy_hourly,
    energy_monthly,
    iot_devices,
    meter_counters,
    rates,
    user_zones,
    zone_offsets,
)
from storage.types import UTCDateTime
from storage.zones import EVERYONE

Migration = Callable[[AsyncConnection, Schema], Awaitable[None]]

_versions = Table(
    "meterflow_schema",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def _initial(conn: AsyncConnection, schema: Schema) -> None:
    await schema.create_tables(conn)


async def _counters_and_partial_readings(conn: AsyncConnection, schema: Schema) -> None:
    """Version 2: `meter_counters`, and readings that may lack energy or power."""
    await conn.run_sync(meter_counters.create, checkfirst=True)
    await schema.relax_measures(conn)


async def _rollups(conn: AsyncConnection, _: Schema) -> None:
    """Version 3: the hourly, daily and monthly rollups (version 6 fills them from the
    readings already stored; version 7 adds the `user_energy_summary` view over them)."""
    for table in (energy_hourly, energy_daily, energy_monthly):
        await conn.run_sync(table.create, checkfirst=True)


async def _lean_writes(conn: AsyncConnection, schema: Schema) -> None:
    """Version 4: the shape that keeps batch writes cheap (PostgreSQL: no foreign key from
    readings to devices, rollups updated in place; SQLite: nothing to change)."""
    await schema.lean_writes(conn)


async def _bounded_counters(conn: AsyncConnection, schema: Schema) -> None:
    """Version 5: a counter's held low value (glitch or reset, see storage/counters.py)
    and replacement, and a device's maximum power. Tables created by an earlier step of
    the same upgrade have them already."""
    for table, name in ((meter_counters, "low_kwh"), (meter_counters, "low_at"),
                        (meter_counters, "replaced"), (iot_devices, "max_power_kw")):  # fmt: skip
        if name not in await conn.run_sync(_column_names, table.name):
            kind = table.c[name].type.compile(dialect=conn.dialect)
            await conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")


async def _spread_energy(conn: AsyncConnection, schema: Schema) -> None:
    """Version 6: where a reading's interval starts, the 15-minute rollup, and every rollup
    still empty filled from the readings stored (storage/rollups.py)."""
    await schema.add_reading_columns(conn)
    await conn.run_sync(energy_15min.create, checkfirst=True)
    delta = schema.rollup_delta(BASE_NAME)
    for rollup in ROLLUPS:
        filled = f"SELECT count(*) FROM (SELECT 1 FROM {rollup.table} LIMIT 1) AS one"
        if await conn.scalar(text(filled)):
            continue
        sql = backfill_sql(rollup, delta, schema.rollup_bucket(rollup, "quarter_hour"))
        await conn.execute(in_window(sql, *ALL_TIME))


async def _owners_at_the_time(conn: AsyncConnection, schema: Schema) -> None:
    """Version 7: `device_owners`, each device owned by its present owner from the
    beginning, as every reading stored so far says (storage/owners.py), and the
    `user_energy_summary` view following it (version 9 makes its days local)."""
    await conn.run_sync(device_owners.create, checkfirst=True)
    await conn.execute(
        insert(device_owners).from_select(
            ["device_id", "since", "user_id"],
            select(
                iot_devices.c.device_id, literal(BEGINNING, UTCDateTime()), iot_devices.c.user_id
            )
            .where(iot_devices.c.user_id.is_not(None))
            .where(~iot_devices.c.device_id.in_(select(device_owners.c.device_id))),
        )
    )


async def _covered_rollups(conn: AsyncConnection, schema: Schema) -> None:
    """Version 8: SQLite's rollup indexes hold every measure, so a question over every
    device (a local day of the whole fleet) is answered from the index alone."""
    await schema.cover_rollups(conn)


async def _local_summary(conn: AsyncConnection, schema: Schema) -> None:
    """Version 9: the `[analytics]` time zones in the database (storage/zones.py), UTC
    until the daemon or a command records the settings', for `user_energy_summary` over
    each user's local days (made by version 12, which needs version 11's roles)."""
    for table in (user_zones, zone_offsets):
        await conn.run_sync(table.create, checkfirst=True)
    if not await conn.scalar(select(func.count()).select_from(user_zones)):
        await conn.execute(insert(user_zones).values(user_id=EVERYONE, zone="UTC"))
        await conn.execute(insert(zone_offsets).values(zone="UTC", since=BEGINNING, offset_s=0))


async def _more_device_types(conn: AsyncConnection, schema: Schema) -> None:
    """Version 10: batteries, inverters, EV chargers and heat pumps in the registry, and
    the readings' `state_of_charge`."""
    await schema.widen_device_types(conn)
    await schema.add_reading_columns(conn)


async def _costs(conn: AsyncConnection, schema: Schema) -> None:
    """Version 11: `rates`, `dynamic_prices` and `carbon_intensity`; the rollups' cost and
    carbon (NULL until `meterflow costs recompute` prices what is stored:
    storage/prices.py); devices' roles."""
    for table in (rates, dynamic_prices, carbon_intensity):
        await conn.run_sync(table.create, checkfirst=True)
    if "role" not in await conn.run_sync(_column_names, iot_devices.name):
        await conn.exec_driver_sql("ALTER TABLE iot_devices ADD COLUMN role VARCHAR(16)")
    for rollup in ROLLUPS:
        present = await conn.run_sync(_column_names, rollup.table)
        for name in ("cost", "carbon"):
            if name not in present:
                await conn.exec_driver_sql(f"ALTER TABLE {rollup.table} ADD COLUMN {name} FLOAT")
    await schema.cover_rollups(conn)


async def _household_summary(conn: AsyncConnection, schema: Schema) -> None:
    """Version 12: `user_energy_summary` counts a user's home by its devices' roles
    (storage/household.py), a submeter's energy no longer added to its grid meter's."""
    await conn.exec_driver_sql(f"DROP VIEW IF EXISTS {SUMMARY_VIEW}")
    await conn.exec_driver_sql(summary_view_ddl(schema.local_date))


async def _reading_costs(conn: AsyncConnection, schema: Schema) -> None:
    """Version 13: each reading's `cost` and `carbon_footprint` (NULL for what was stored
    before: `meterflow costs recompute` prices it)."""
    await schema.add_reading_columns(conn)


async def _audit_log(conn: AsyncConnection, schema: Schema) -> None:
    """Version 14: `audit_log`, who read or changed personal data (storage/audit.py)."""
    await conn.run_sync(audit_log.create, checkfirst=True)


def _column_names(sync: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(sync).get_columns(table)}


MIGRATIONS: dict[int, Migration] = {
    1: _initial,
    2: _counters_and_partial_readings,
    3: _rollups,
    4: _lean_writes,
    5: _bounded_counters,
    6: _spread_energy,
    7: _owners_at_the_time,
    8: _covered_rollups,
    9: _local_summary,
    10: _more_device_types,
    11: _costs,
    12: _household_summary,
    13: _reading_costs,
    14: _audit_log,
}
SCHEMA_VERSION = max(MIGRATIONS)


async def _version(conn: AsyncConnection) -> int | None:
    names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    if _versions.name not in names:
        return 0 if "iot_devices" in names else None
    version = await conn.scalar(select(func.max(_versions.c.version)))
    return int(version or 0)


async def _apply(conn: AsyncConnection, schema: Schema, current: int) -> list[int]:
    applied = []
    for version in sorted(v for v in MIGRATIONS if v > current):
        await MIGRATIONS[version](conn, schema)
        await conn.run_sync(_versions.create, checkfirst=True)
        await conn.execute(_versions.insert().values(version=version))
        applied.append(version)
    return applied


async def schema_version(conn: AsyncConnection) -> int | None:
    """The database's schema version; None for a database without meterflow's tables."""
    async with conn.begin():
        return await _version(conn)


async def upgrade(conn: AsyncConnection, schema: Schema) -> list[int]:
    """Apply every migration the database lacks, in one transaction; return their versions."""
    async with conn.begin():
        await schema.lock_schema(conn)
        return await _apply(conn, schema, await _version(conn) or 0)


async def require_current(conn: AsyncConnection, schema: Schema, url: str) -> None:
    """Create the schema on an empty database; refuse any other version than ours.

    Version check and creation share one transaction under the schema lock, so daemons
    starting together on an empty database create it once.
    """
    async with conn.begin():
        await schema.lock_schema(conn)
        version = await _version(conn)
        if version is None:
            await _apply(conn, schema, 0)
        elif version != SCHEMA_VERSION:
            raise SchemaVersionError(version, SCHEMA_VERSION, url)
        await schema.prepare(conn)
