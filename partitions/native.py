"""PostgreSQL: monthly partitions of the `energy_data` table itself (declarative partitioning)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions.naming import BASE_NAME, Month, month_of_table

# Any fixed number: every meterflow daemon on the database takes this transaction-level
# lock before creating partitions, so two daemons meeting a new month create it once.
CREATION_LOCK = 0x6D657465  # "mete"


def partition_ddl(month: Month) -> str:
    """`CREATE TABLE ... PARTITION OF energy_data` for one month, bounds in UTC."""
    return (
        f"CREATE TABLE IF NOT EXISTS {month.table_name} PARTITION OF {BASE_NAME} "
        f"FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
    )


class NativePartitions:
    """The partitions attached to `energy_data`, as this daemon knows them.

    No DEFAULT partition: rows parked in one would block creating their month later.
    `ensure` runs inside the caller's transaction, under an advisory lock shared by all
    daemons; the caller `confirm`s the created months once that transaction committed.
    """

    def __init__(self) -> None:
        self._existing: set[Month] = set()

    @property
    def months(self) -> frozenset[Month]:
        return frozenset(self._existing)

    async def load(self, conn: AsyncConnection) -> None:
        result = await conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            f"JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = '{BASE_NAME}'"
        )
        self._existing = {m for (name,) in result if (m := month_of_table(name)) is not None}

    async def ensure(self, conn: AsyncConnection, months: Iterable[Month]) -> list[Month]:
        missing = sorted(set(months) - self._existing)
        if not missing:
            return []
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CREATION_LOCK})")
        for month in missing:
            await conn.exec_driver_sql(partition_ddl(month))
        return missing

    def confirm(self, created: Iterable[Month]) -> None:
        self._existing.update(created)
