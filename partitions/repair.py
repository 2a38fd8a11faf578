"""PostgreSQL: rows that landed in a DEFAULT partition, and moving them where they belong.

meterflow never creates a DEFAULT partition, but an operator may: rows parked there block
creating their month's partition later. The daemon reports such rows; `meterflow partitions
repair` moves them into proper monthly partitions.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions.naming import BASE_NAME, Month
from partitions.native import CREATION_LOCK, partition_ddl


async def default_partition(conn: AsyncConnection) -> str | None:
    """The name of the DEFAULT partition of energy_data, if there is one."""
    result = await conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = '{BASE_NAME}' "
        "AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'"
    )
    row = result.first()
    return None if row is None else str(row[0])


async def default_rows(conn: AsyncConnection) -> int:
    """How many readings sit in the DEFAULT partition (0 when there is none)."""
    name = await default_partition(conn)
    if name is None:
        return 0
    result = await conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"')
    return int(result.scalar_one())


async def repair(conn: AsyncConnection) -> dict[Month, int]:
    """Move every row of the DEFAULT partition into its month's partition, in the caller's
    transaction; return how many rows each month received."""
    name = await default_partition(conn)
    if name is None:
        return {}
    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CREATION_LOCK})")
    result = await conn.exec_driver_sql(
        f"SELECT DISTINCT date_trunc('month', recorded_at AT TIME ZONE 'UTC') FROM \"{name}\""
    )
    moved: dict[Month, int] = {}
    for (start,) in result.all():
        month = Month.of(start.replace(tzinfo=UTC))
        bounds = (
            f"recorded_at >= '{month.start.isoformat()}' "
            f"AND recorded_at < '{month.end.isoformat()}'"
        )
        # A partition cannot be created while the DEFAULT partition holds rows of its
        # range: take them out, create it, put them back through the parent.
        await conn.exec_driver_sql(
            f'CREATE TEMP TABLE meterflow_moving AS SELECT * FROM "{name}" WHERE {bounds}'
        )
        await conn.exec_driver_sql(f'DELETE FROM "{name}" WHERE {bounds}')
        await conn.exec_driver_sql(partition_ddl(month))
        inserted = await conn.exec_driver_sql(
            f"INSERT INTO {BASE_NAME} OVERRIDING SYSTEM VALUE SELECT * FROM meterflow_moving"
        )
        await conn.exec_driver_sql("DROP TABLE meterflow_moving")
        moved[month] = int(inserted.rowcount)
    return moved
