"""Opening a database: URL normalisation, SQLite pragmas and explicit transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage.errors import StorageError, UnsupportedDatabaseError

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """Durability and locking knobs of the SQLite backend.

    FULL syncs the write-ahead log at every commit, so a commit the daemon acknowledges
    survives a power loss. NORMAL in WAL mode survives a crash of the process only: the
    commits since the last checkpoint can roll back when the machine loses power.
    """

    synchronous: Synchronous = "FULL"
    busy_timeout_ms: int = 5000
    # SQLite's own default; the daemon's writer leaves checkpoints to a connection of
    # their own and sets a far longer log here (storage/checkpoints.py).
    wal_autocheckpoint_pages: int = 1000


def database_url(url: str) -> URL:
    """Parse a user-facing URL, choosing the async driver for it."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise UnsupportedDatabaseError(url) from exc
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and driver in {"psycopg2", "asyncpg"}:
        return parsed.set(drivername="postgresql+asyncpg")
    if backend != "sqlite" or driver not in {"pysqlite", "aiosqlite"}:
        raise UnsupportedDatabaseError(url)
    if not parsed.database or parsed.database == ":memory:":
        raise UnsupportedDatabaseError(url)
    return parsed.set(drivername="sqlite+aiosqlite")


def sqlite_path(url: str) -> Path | None:
    """The file a sqlite:/// URL names; None for any other URL. What works on SQLite files
    alone (the daemon's lock file, checkpoints, file backups) asks this."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def sqlite_file(url: str, purpose: str) -> Path:
    """The existing SQLite file a URL names, for commands that work on SQLite only."""
    path = sqlite_path(url)
    if path is None:
        raise StorageError(f"{purpose} works on SQLite databases, not {url!r}")
    if not path.exists():
        raise StorageError(f"no database at {path}")
    return path


# PostgreSQL sessions name themselves, so that an operator (and `meterflow restore`) can
# tell a daemon's connections from a command's in pg_stat_activity.
DAEMON_APPLICATION = "meterflow-daemon"
COMMAND_APPLICATION = "meterflow"


def open_engine(
    url: str, sqlite: SQLiteOptions | None = None, *, application: str = COMMAND_APPLICATION
) -> AsyncEngine:
    """An engine whose connections are configured for meterflow's writer."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "postgresql":
        # pre_ping replaces a connection the server dropped before the writer uses it.
        # A commit returns only once on disk, whatever the server's default: the daemon
        # acknowledges messages on the strength of it.
        settings = {"application_name": application, "synchronous_commit": "on"}
        return create_async_engine(
            parsed, pool_pre_ping=True, connect_args={"server_settings": settings}
        )
    if parsed.database:
        _create_private(Path(parsed.database))
    engine = create_async_engine(parsed)
    _configure_sqlite(engine, sqlite or SQLiteOptions())
    return engine


def _create_private(path: Path) -> None:
    """Create the database file (and its directory) readable by its owner only.

    SQLite gives the -wal and -shm files the mode of the database file, so this covers them.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _switch_to_wal(cursor: Any, patience_s: float) -> None:  # noqa: ANN401
    """Put the database in WAL mode, waiting out other connections doing the same.

    Two connections switching a new database to WAL at once can get SQLITE_BUSY without
    the busy handler being consulted, so busy_timeout does not cover this one statement.
    Runs once per connection, so the short sleeps do not matter.
    """
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


def _configure_sqlite(engine: AsyncEngine, options: SQLiteOptions) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401
        # The sqlite3 module would otherwise open transactions lazily and commit DDL on
        # its own; we issue BEGIN ourselves so a new partition commits with its rows.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(options.busy_timeout_ms)}")
        # Takes effect only in a new, empty database: pages freed by dropping or
        # archiving a month can then go back to the file system (`meterflow db optimize`).
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        _switch_to_wal(cursor, options.busy_timeout_ms / 1000)
        cursor.execute(f"PRAGMA synchronous={options.synchronous}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(options.wal_autocheckpoint_pages)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so a busy database makes us wait at
        # BEGIN (honouring busy_timeout) instead of failing halfway through a batch.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_SQLITE_SYNCHRONOUS: dict[int, Synchronous] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


async def durability(conn: AsyncConnection) -> tuple[str, str, bool]:
    """(setting, value, survives power loss) of the connection's commits:
    `synchronous` on SQLite, `synchronous_commit` on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        value = str(await conn.scalar(text("SHOW synchronous_commit")))
        return "synchronous_commit", value, value in {"on", "remote_write", "remote_apply"}
    level = _SQLITE_SYNCHRONOUS[int(await conn.scalar(text("PRAGMA synchronous")) or 0)]
    return "synchronous", level, level in {"FULL", "EXTRA"}
