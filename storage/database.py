"""One connection to a meterflow database, for commands that run beside the daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import Dialect, backend_for
from storage.engine import SQLiteOptions, connection, open_engine
from storage.migrations import require_current
from storage.settings import AnalyticsSettings
from storage.zones import record_zones


@dataclass(frozen=True, slots=True)
class Database:
    conn: AsyncConnection
    backend: Dialect
    url: str


@asynccontextmanager
async def connect(
    url: str,
    options: SQLiteOptions | None = None,
    zones: AnalyticsSettings | None = None,
) -> AsyncIterator[Database]:
    """Connect to a database at the current schema version (created if the database is empty),
    recording `zones` for SQL's local days (storage/zones.py).

    An outdated schema raises SchemaVersionError naming `meterflow db upgrade`.
    """
    engine = open_engine(url, options)
    try:
        conn = await connection(engine)
        try:
            backend = backend_for(engine.dialect.name)
            await require_current(conn, backend, url)
            if zones is not None:
                await record_zones(conn, zones)
            yield Database(conn, backend, url)
        finally:
            await conn.close()
    finally:
        await engine.dispose()
