"""The one storage interface the writer uses; SQLite and PostgreSQL each implement it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import Month, Partitions
from storage.devices import DeviceSighting
from storage.records import Reading


class Backend(Protocol):
    """Set-based statements for one database: a batch costs a few statements, not rows."""

    @property
    def partitions(self) -> Partitions: ...

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """Within the caller's transaction, keep other daemons out of schema changes."""
        ...

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create whatever of the schema is missing, within the caller's transaction."""
        ...

    async def relax_measures(self, conn: AsyncConnection) -> None:
        """Schema v2: let energy_amount and instantaneous_power be NULL in every partition."""
        ...

    async def prepare(self, conn: AsyncConnection) -> None:
        """Learn the existing partitions (and mend the SQLite view), in the caller's transaction."""
        ...

    async def stray_rows(self, conn: AsyncConnection) -> int:
        """Readings in no monthly partition (a PostgreSQL DEFAULT partition); 0 if none."""
        ...

    async def registered_owners(
        self, conn: AsyncConnection, device_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """The registered devices among `device_ids`, each with its owner's user id."""
        ...

    async def insert_readings(
        self,
        conn: AsyncConnection,
        readings: Sequence[Reading],
        now: datetime,
    ) -> int:
        """Insert readings into existing partitions, skipping duplicates, each with its
        registered owner; return the new count."""
        ...

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        """Upsert every sighted device: last_seen never moves backwards, inactive turns active."""
        ...

    async def store_readings(
        self,
        conn: AsyncConnection,
        months: Mapping[Month, Sequence[Reading]],
        seen: Sequence[DeviceSighting],
        now: datetime,
    ) -> asyncio.Future[int]:
        """Queue the common batch as one transaction of its own: readings (grouped by the
        month they fall into, as `storage.records.by_month` groups them) into existing
        partitions, duplicates skipped, owners looked up, sighted devices upserted.

        The future gives the count of new readings once the transaction has committed.
        Transactions queued one after another commit in that order.
        """
        ...


def backend_for(dialect: str) -> Backend:
    # Imported here so that each backend's driver-specific module loads only when used.
    if dialect == "postgresql":
        from storage.postgres import PostgresBackend  # noqa: PLC0415

        return PostgresBackend()
    from storage.sqlite import SQLiteBackend  # noqa: PLC0415

    return SQLiteBackend()
