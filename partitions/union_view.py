"""SQLite: one table per month, and a UNION ALL view named `energy_data` over them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions.naming import Month, month_of_table
from partitions.view import drop_view_ddl, view_ddl

PartitionFactory = Callable[[str, MetaData], Table]


class UnionViewPartitions:
    """The monthly tables a SQLite database holds, as seen by its single writer.

    `ensure` runs inside the caller's transaction, so a partition, the view that names it
    and the first rows stored in it commit together or not at all; the caller `confirm`s
    the months it created once that transaction has committed.
    """

    def __init__(self, factory: PartitionFactory) -> None:
        self._factory = factory
        self._metadata = MetaData()
        self._tables: dict[Month, Table] = {}
        self._existing: set[Month] = set()
        self._template = factory("energy_data_template", MetaData())

    @property
    def months(self) -> frozenset[Month]:
        return frozenset(self._existing)

    def _table(self, month: Month) -> Table:
        table = self._tables.get(month)
        if table is None:
            table = self._factory(month.table_name, self._metadata)
            self._tables[month] = table
        return table

    async def load(self, conn: AsyncConnection) -> None:
        """Learn which partitions exist; call once the writer's connection is open."""
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        self._existing = {m for m in map(month_of_table, names) if m is not None}

    async def ensure(self, conn: AsyncConnection, months: Iterable[Month]) -> list[Month]:
        """Create the missing partitions among `months`; return those it created."""
        missing = sorted(set(months) - self._existing)
        if not missing:
            return []
        # Another process (`meterflow partitions archive`) may have removed months since:
        # the view must name only tables that exist.
        await self.load(conn)
        missing = sorted(set(months) - self._existing)
        for month in missing:
            await conn.run_sync(self._table(month).create, checkfirst=True)
        await self._rebuild_view(conn, self._existing | set(missing))
        return missing

    def confirm(self, created: Iterable[Month]) -> None:
        """Record partitions whose creating transaction has committed."""
        self._existing.update(created)

    async def rebuild_view(self, conn: AsyncConnection) -> None:
        await self._rebuild_view(conn, self._existing)

    async def _rebuild_view(self, conn: AsyncConnection, months: set[Month]) -> None:
        views = await conn.run_sync(lambda sync: inspect(sync).get_view_names())
        for statement in [*drop_view_ddl(views), *view_ddl(months, self._template)]:
            await conn.exec_driver_sql(statement)
