"""Opening a database: URL normalisation, SQLite pragmas and explicit transactions."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage import cipher
from storage.errors import (
    DatabaseUnavailableError,
    StorageError,
    UnsupportedDatabaseError,
    database_said,
)

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


# A new SQLite database's page size, four times SQLite's default: a batch's commit writes
# each page it changed to the log, and the rows of a thousand devices change a page per
# device in every index keyed by device; in larger pages those writes are a quarter as many
# system calls, and the B-trees a level shallower. Larger still, 2 MiB of page cache holds
# too few of them (docs/performance.md, "Larger pages").
PAGE_SIZE = 16_384


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """Durability, locking and memory knobs of the SQLite backend.

    FULL syncs the write-ahead log at every commit, so a commit the daemon acknowledges
    survives a power loss. NORMAL in WAL mode survives a crash of the process only: the
    commits since the last checkpoint can roll back when the machine loses power.
    """

    synchronous: Synchronous = "FULL"
    busy_timeout_ms: int = 5000
    # SQLite's own default; the daemon's writer leaves checkpoints to a connection of
    # their own and sets a far longer log here (storage/checkpoints.py).
    wal_autocheckpoint_pages: int = 1000
    # The encryption key of the database (storage/cipher.py); None: not encrypted.
    key: str | None = field(default=None, repr=False)
    # Each connection's page cache; None keeps SQLite's 2 MiB.
    cache_mib: int | None = None
    # Temporary tables and statement journals in memory rather than in files.
    temp_in_memory: bool = False


def database_url(url: str) -> URL:
    """Parse a user-facing URL, choosing the async driver for it."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError:
        hint = f"a SQLite file is given as sqlite:///{url}" if "://" not in url else None
        raise UnsupportedDatabaseError(url, hint) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and driver in {"psycopg2", "asyncpg"}:
        mode = parsed.query.get("sslmode", "prefer")
        if mode not in SSL_MODES:
            raise UnsupportedDatabaseError(url, f"sslmode is one of {', '.join(SSL_MODES)}")
        return parsed.set(drivername="postgresql+asyncpg")
    if backend != "sqlite" or driver not in {"pysqlite", "aiosqlite"}:
        raise UnsupportedDatabaseError(url)
    if parsed.host:
        # sqlite://data/x.db: "data" is read as a host name and x.db a file in the
        # working directory.
        hint = f"a SQLite path takes three slashes: sqlite:///{parsed.host}/{parsed.database}"
        raise UnsupportedDatabaseError(url, hint)
    if not parsed.database or parsed.database == ":memory:":
        raise UnsupportedDatabaseError(url)
    return parsed.set(drivername="sqlite+aiosqlite")


# libpq's sslmode values, which asyncpg takes as its `ssl` argument.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's URL parameters for TLS; asyncpg takes them as one `ssl` argument instead.
_TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def tls_argument(query: Mapping[str, str | tuple[str, ...]]) -> str | ssl.SSLContext | None:
    """What asyncpg's `ssl` argument makes of a URL's libpq TLS parameters: the mode, or
    a context where a CA or a client certificate is named (`sslmode=verify-full&
    sslrootcert=/etc/ssl/db-ca.pem`)."""
    found = {name: str(query[name]) for name in _TLS_PARAMETERS if name in query}
    if not found:
        return None
    mode = found.get("sslmode", "verify-full" if "sslrootcert" in found else "prefer")
    if not {"sslrootcert", "sslcert"} & set(found):
        return mode
    context = ssl.create_default_context(cafile=found.get("sslrootcert"))
    if mode != "verify-full":
        context.check_hostname = False
    if mode in {"disable", "allow", "prefer", "require"}:
        context.verify_mode = ssl.CERT_NONE
    if "sslcert" in found:
        context.load_cert_chain(found["sslcert"], found.get("sslkey"))
    return context


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
        connect: dict[str, object] = {"server_settings": settings}
        tls = tls_argument(parsed.query)
        if tls is not None:
            connect["ssl"] = tls
        query = {k: v for k, v in parsed.query.items() if k not in _TLS_PARAMETERS}
        return create_async_engine(
            parsed.set(query=query), pool_pre_ping=True, connect_args=connect
        )
    options = sqlite or SQLiteOptions()
    if parsed.database:
        _create_private(Path(parsed.database), plain=options.key is None)
    engine = create_async_engine(parsed, module=cipher.async_dbapi(options.key))
    _configure_sqlite(engine, options)
    return engine


def database_directory(path: Path) -> None:
    """Make the directory of a SQLite database (its owner's only); StorageError naming the
    directory if that cannot be done."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot create the database {path}: {exc.strerror or exc}; give storage.url "
        "(--db) a place this user can write to"
    )


def _create_private(path: Path, *, plain: bool) -> None:
    """Create the database file (and its directory) readable by its owner only; a `plain`
    one (not encrypted) laid out with pages of PAGE_SIZE.

    SQLite gives the -wal and -shm files the mode of the database file, so this covers them.
    """
    database_directory(path)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise _unwritable(path, exc) from None
    if plain:
        _lay_out(path)


def _lay_out(path: Path) -> None:
    """Write a new file's header: its page size, which a database keeps for life.

    Here, by the one process that created the file, as soon as it has: with the page size
    given by every connection, daemons starting together on a new file now and then
    failed, one held out past its busy timeout (tests/test_migrations.py). SQLCipher's
    page size would have to be given again at every opening: an encrypted database keeps
    the default, which `sqlcipher` opens with the passphrase alone.
    """
    with closing(cipher.connect(path, None)) as db:
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")


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
        except cipher.OperationalError:
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
        if options.cache_mib is not None:
            cursor.execute(f"PRAGMA cache_size=-{int(options.cache_mib) * 1024}")
        if options.temp_in_memory:
            cursor.execute("PRAGMA temp_store=MEMORY")
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


async def connection(engine: AsyncEngine) -> AsyncConnection:
    """A connection from `engine`; why none can be had, in the operator's terms:
    DatabaseUnavailableError for what may pass (the server down or starting, no route),
    StorageError naming the fix for what will not (a missing database, a refused login)."""
    try:
        return await engine.connect()
    except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database at {_server(engine)}: {_reason(exc)}"
        ) from None
    except asyncpg.ClientConfigurationError as exc:
        # The URL's TLS parameters name what cannot be used (no root certificate).
        reason = str(exc).splitlines()[0]
        raise StorageError(
            f"cannot connect to {_server(engine)} as storage.url asks: {reason}; give the "
            "server's CA with sslrootcert=FILE in the URL"
        ) from None
    except asyncpg.InvalidCatalogNameError as exc:
        name = engine.url.database
        raise StorageError(
            f"{database_said(exc)} on {_server(engine)}: create it (createdb -h "
            f"{engine.url.host or 'localhost'} {name}) or fix storage.url"
        ) from None
    except asyncpg.PostgresError as exc:
        raise StorageError(
            f"PostgreSQL at {_server(engine)} refused the connection: {database_said(exc)}; "
            "check the user and password in storage.url"
        ) from None


def _server(engine: AsyncEngine) -> str:
    url = engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and listening there?)"
    if isinstance(exc, socket.gaierror):
        return "no such host"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return database_said(exc)
