"""The storage interface that owns the dialects; SQLite and PostgreSQL each implement it.

One class per database (`storage/sqlite.py`, `storage/postgres.py`) implements three
interfaces, kept apart because different parts of meterflow use them:

- `Schema`: creating and upgrading the schema (storage/migrations.py);
- `Backend`: the writer's hot path, and the statements whose SQL differs by database;
- `Operations`: what is done to a whole database by its URL (backup, restore, read-only
  queries, partition maintenance from a connection of its own).

Nothing outside those two modules asks which database it talks to: it asks for the
backend (`backend_for`, `backend_for_url`) and calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import Month, Partitions, PartitionStore
from storage.devices import DeviceSighting
from storage.engine import SQLiteOptions, database_url
from storage.records import Reading
from storage.rollups import Rollup

if TYPE_CHECKING:
    from storage.verify import Difference

# Column names, then rows: what a read-only query returns.
Rows = tuple[list[str], list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class PlainBatch:
    """The common batch, as the writer hands it to `Backend.store_readings`: readings alone,
    grouped by the month they fall into (`storage.records.by_month`), into partitions
    that exist; the devices they came from (`storage.devices.sightings`); and when."""

    months: Mapping[Month, Sequence[Reading]]
    seen: Sequence[DeviceSighting]
    now: datetime


class Schema(Protocol):
    """The schema steps of one database, each within the caller's transaction."""

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """Keep other daemons out of schema changes until the transaction ends."""
        ...

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create whatever of the schema is missing."""
        ...

    async def relax_measures(self, conn: AsyncConnection) -> None:
        """Schema v2: let energy_amount and instantaneous_power be NULL in every partition."""
        ...

    async def lean_writes(self, conn: AsyncConnection) -> None:
        """Schema v4: the shape that keeps batch writes cheap on this database."""
        ...

    async def cover_rollups(self, conn: AsyncConnection) -> None:
        """Schema v8: rollup indexes that answer questions over every device alone."""
        ...

    async def add_reading_columns(self, conn: AsyncConnection) -> None:
        """Give every readings table the columns of the current shape it lacks (schema v6:
        `interval_start`, v10: `state_of_charge`, v13: `cost`, `carbon_footprint`)."""
        ...

    async def widen_device_types(self, conn: AsyncConnection) -> None:
        """Schema v10: let the registry hold every device type of `storage.DeviceType`."""
        ...

    async def prepare(self, conn: AsyncConnection) -> None:
        """Learn the existing partitions (and mend the SQLite view)."""
        ...

    def rollup_bucket(self, rollup: Rollup, column: str) -> str:
        """The SQL expression of the rollup's bucket (quarter hour, hour, day, month) of a
        time column."""
        ...

    def rollup_delta(self, source: str, where: str = "") -> str:
        """A WITH clause whose `delta` holds the rollup totals per device, data type and
        quarter hour of the readings of `source` that `where` selects, spread energy
        included (storage/rollups.py)."""
        ...

    async def readings_in_window(
        self, conn: AsyncConnection, start: datetime
    ) -> list[tuple[str, str]]:
        """Each readings table that may hold readings with energy from `start` on, with a
        WITH clause whose `pieces` are those of its readings in [:start, :end)
        (storage/rollups.py READINGS_IN_WINDOW)."""
        ...

    def local_date(self, column: str, offset_s: str) -> str:
        """The SQL expression of the calendar date of a stored UTC time moved by
        `offset_s`, an SQL expression of seconds: its local date where that is the offset."""
        ...

    def shifted_text(self, column: str, offset_minutes: int, length: int) -> str:
        """The SQL expression of the first `length` characters of 'YYYY-MM-DD HH:MM' of a
        stored time moved by `offset_minutes`: a UTC time's local date, hour or quarter hour
        where the zone's offset is that (storage/energy.py)."""
        ...


class Backend(Protocol):
    """Set-based statements for one database: a batch costs a few statements, not rows."""

    @property
    def partitions(self) -> Partitions: ...

    def readings_table(self, month: Month) -> Table:
        """The table to read a month's readings from, so that only that month is read."""
        ...

    async def lock_rollups(self, conn: AsyncConnection) -> None:
        """Hold other writers' rollup updates back until the caller's transaction ends."""
        ...

    async def stray_rows(self, conn: AsyncConnection) -> int:
        """Readings in no monthly partition (a PostgreSQL DEFAULT partition); 0 if none."""
        ...

    async def move_stray_rows(self, conn: AsyncConnection) -> dict[Month, int]:
        """Move stray readings into their months' partitions; how many went to each."""
        ...

    async def registered_owners(
        self, conn: AsyncConnection, device_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """The registered devices among `device_ids`, each with its owner's user id."""
        ...

    async def insert_readings(
        self, conn: AsyncConnection, readings: Sequence[Reading], now: datetime
    ) -> int:
        """Insert readings into existing partitions, skipping duplicates, each with its
        registered owner; return the new count."""
        ...

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        """Upsert every sighted device: last_seen never moves backwards, inactive turns active."""
        ...

    async def store_readings(self, conn: AsyncConnection, batch: PlainBatch) -> asyncio.Future[int]:
        """Store the common batch as one transaction of its own: readings into existing
        partitions, duplicates skipped, owners looked up, sighted devices upserted.

        The future gives the count of new readings once the transaction has committed;
        transactions stored one after another commit in that order. Whether it is done
        when this returns is the backend's choice: SQLite queues the transaction to its
        connection's thread and returns, so the writer prepares the next batch meanwhile;
        PostgreSQL runs it before returning, one statement at a time on one connection.
        """
        ...


class Operations(Protocol):
    """What is done to a whole database by its URL, beside any daemon; each call blocks
    until done, as a command runs it. `key` is a SQLite database's encryption key
    (storage/cipher.py), None where it has none; PostgreSQL has no use for it."""

    def partition_store(
        self, engine: AsyncEngine, url: str, options: SQLiteOptions | None = None
    ) -> PartitionStore:
        """Maintenance of whole partitions: list, drop, archive, restore."""
        ...

    def backup(self, url: str, directory: Path, keep: int, *, key: str | None) -> Path:
        """A consistent copy of the database in `directory`, safe while a daemon writes;
        only the newest `keep` are kept. Returns the new file."""
        ...

    def restore(self, backup: Path, url: str, *, force: bool, key: str | None) -> str:
        """Replace the database with a backup, refused while a daemon uses it; returns
        where it went, in words."""
        ...

    def archived_differences(
        self, url: str, archive: Path, month: Month, *, key: str | None
    ) -> list[Difference]:
        """`month`'s rollup rows against the readings of its archive file (as
        `storage.verify.month_differences` does for a live month); QueryError for an
        archive this database cannot read."""
        ...

    def read_only_query(
        self, url: str, sql: str, archives: Sequence[Path] | None, *, key: str | None
    ) -> Rows:
        """Run one statement that may not write; with `archives` (files of old months,
        perhaps none), over those months too."""
        ...


class Dialect(Schema, Backend, Operations, Protocol):
    """Everything one database's backend implements."""


def backend_for(dialect: str, *, priced: bool = False) -> Dialect:
    """The backend of a SQLAlchemy dialect name; a new one, with partitions not yet read.
    A `priced` one gives the rollups each batch's cost and carbon (storage/prices.py)."""
    # Imported here so that each backend's driver-specific module loads only when used.
    if dialect == "postgresql":
        from storage.postgres import PostgresBackend  # noqa: PLC0415

        return PostgresBackend(priced=priced)
    from storage.sqlite import SQLiteBackend  # noqa: PLC0415

    return SQLiteBackend(priced=priced)


def backend_for_url(url: str) -> Dialect:
    """The backend of the database a user-facing URL names (UnsupportedDatabaseError if none)."""
    return backend_for(database_url(url).get_backend_name())


# The INSERT constructs with ON CONFLICT, by dialect name: statements that both databases
# run alike but for that clause take theirs from here.
_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def insert_for(connectable: AsyncConnection | AsyncEngine) -> Callable[[Table], Any]:
    """The INSERT construct (with `on_conflict_do_*`) of the database `connectable` uses."""
    return _INSERTS[connectable.dialect.name]
