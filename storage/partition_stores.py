"""The partition store for a database, with the table shape it needs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from partitions import PartitionStore, PostgresPartitionStore, SQLitePartitionStore
from storage.engine import SQLiteOptions, sqlite_file
from storage.tables import energy_partition


def partition_store(
    engine: AsyncEngine, url: str, options: SQLiteOptions | None = None
) -> PartitionStore:
    if engine.dialect.name == "postgresql":
        return PostgresPartitionStore(engine)
    return SQLitePartitionStore(
        sqlite_file(url, "partition maintenance"),
        energy_partition("energy_data_template"),
        (options or SQLiteOptions()).busy_timeout_ms,
    )
