"""SQLite encryption at rest: every SQLite connection of meterflow opens here.

Without `storage.encryption_key` a connection is the standard library's sqlite3, as it
always was. With one, it is SQLCipher's (the sqlcipher3 module: SQLite with AES-256 pages
and an HMAC per page): the database, its write-ahead log, the archived months and the
backups are encrypted with the key, and `sqlcipher` opens them with the same passphrase.

sqlcipher3 has the sqlite3 module's API, but exception classes of its own, not
subclasses of sqlite3's: an `except` of a connection's errors names both (`Error`,
`OperationalError`, `DatabaseError`, `ProgrammingError`), and SQLAlchemy is given a
DB-API module whose classes are SQLCipher's (`async_dbapi`), so that it wraps them as it
wraps sqlite3's. sqlcipher3 (SQLCipher and OpenSSL, 6.6 MiB of memory) is loaded by the
first keyed connection only; until then no SQLCipher error can be raised and those
tuples hold sqlite3's classes alone. Loading it adds SQLCipher's: name them as
`cipher.Error` (looked up when an exception is matched), never import them by name.

Files are attached with the key given again (`attach`): without it SQLCipher reuses the
main file's derived key, which another file's salt does not open.

A file the key does not open is refused when the connection opens, with a line saying
which case it is (`EncryptionKeyError`): an encrypted file and no key, another key, or a
plain file and a key.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

from storage.errors import EncryptionKeyError

Errors = tuple[type[Exception], ...]
Error: Errors = (sqlite3.Error,)
OperationalError: Errors = (sqlite3.OperationalError,)
DatabaseError: Errors = (sqlite3.DatabaseError,)
ProgrammingError: Errors = (sqlite3.ProgrammingError,)


@functools.cache
def sqlcipher() -> ModuleType:
    """SQLCipher's DB-API module, loaded on first use, its classes added to the tuples."""
    global Error, OperationalError, DatabaseError, ProgrammingError  # noqa: PLW0603
    from sqlcipher3 import dbapi2  # noqa: PLC0415

    Error = (sqlite3.Error, dbapi2.Error)
    OperationalError = (sqlite3.OperationalError, dbapi2.OperationalError)
    DatabaseError = (sqlite3.DatabaseError, dbapi2.DatabaseError)
    ProgrammingError = (sqlite3.ProgrammingError, dbapi2.ProgrammingError)
    return cast("ModuleType", dbapi2)


# The first bytes of every unencrypted SQLite database; SQLCipher's files start with
# their random salt instead.
PLAIN_HEADER = b"SQLite format 3\x00"
ENVIRONMENT_KEY = "METERFLOW_STORAGE__ENCRYPTION_KEY"


def connect(
    database: str | Path,
    key: str | None,
    *,
    shown_as: Path | None = None,
    **options: Any,  # noqa: ANN401
) -> sqlite3.Connection:
    """A connection to `database` (a path, or a `file:` URI with `uri=True`), keyed with
    `key` if there is one; EncryptionKeyError if the file does not open with it, naming it
    `shown_as` (a scratch copy by the file it came from)."""
    conn: sqlite3.Connection
    if key is None:
        conn = sqlite3.connect(database, **options)
    else:
        conn = cast("sqlite3.Connection", sqlcipher().connect(database, **options))
        # SQLCipher logs every page whose HMAC fails to stderr; a wrong key is reported once,
        # below, in the operator's terms.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = {quoted(key)}")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except DatabaseError as exc:
        conn.close()
        if "not a database" not in str(exc):
            raise
        path = _path(database, uri=bool(options.get("uri")))
        raise refusal(path, key, shown_as or path) from None
    return conn


def attach(conn: sqlite3.Connection, database: str, alias: str, key: str | None) -> None:
    """ATTACH `database` (a path or a `file:` URI) to `conn` as `alias`, encrypted with
    `key` (the sqlite3 module's SQLite accepts and ignores an empty KEY)."""
    conn.execute(f"ATTACH DATABASE ? AS {alias} KEY ?", (database, key or ""))


@dataclass(frozen=True, slots=True)
class Files:
    """Opening and attaching SQLite files with one key, for partitions.SQLitePartitionStore."""

    key: str | None = field(repr=False)

    def connect(self, database: str | Path, **options: Any) -> sqlite3.Connection:  # noqa: ANN401
        return connect(database, self.key, **options)

    def attach(self, conn: sqlite3.Connection, database: str, alias: str) -> None:
        attach(conn, database, alias, self.key)


def export(source: Path, source_key: str | None, target: Path, target_key: str | None) -> None:
    """Copy the database at `source` (encrypted with `source_key`, None: plain) into a new
    file `target`, encrypted with `target_key` (None: plain): SQLCipher's sqlcipher_export,
    with what it leaves out, the auto_vacuum mode (set before any table exists)."""
    driver = sqlcipher()
    conn = driver.connect(str(source), isolation_level=None)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        if source_key is not None:
            conn.execute(f"PRAGMA key = {quoted(source_key)}")
        try:
            (vacuum,) = conn.execute("PRAGMA auto_vacuum").fetchone()
        except driver.DatabaseError as exc:
            if "not a database" not in str(exc):
                raise
            raise refusal(source, source_key, source) from None
        conn.execute(f"ATTACH DATABASE ? AS target KEY {quoted(target_key or '')}", (str(target),))
        conn.execute(f"PRAGMA target.auto_vacuum = {int(vacuum)}")
        conn.execute("SELECT sqlcipher_export('target')")
        conn.execute("DETACH DATABASE target")
    finally:
        conn.close()


def quoted(key: str) -> str:
    """`key` as an SQL string literal."""
    return "'" + key.replace("'", "''") + "'"


def error_base(exc: BaseException) -> type[Exception]:
    """The DB-API base class of a connection's error: sqlite3's or SQLCipher's."""
    if isinstance(exc, sqlite3.Error):
        return sqlite3.Error
    return cast("type[Exception]", sqlcipher().Error)


def refusal(path: Path, key: str | None, shown_as: Path) -> EncryptionKeyError:
    """Why `path` (for the operator `shown_as`) did not open with `key`, and what to do."""
    try:
        with path.open("rb") as file:
            plain = file.read(len(PLAIN_HEADER)) == PLAIN_HEADER
    except OSError:
        plain = False
    if key is None:
        fix = (
            f"it is encrypted, or not a SQLite database: give its key in {ENVIRONMENT_KEY} "
            "(or storage.encryption_key)"
        )
    elif plain:
        fix = (
            "it is not encrypted: `meterflow db encrypt` encrypts it with the key, or unset "
            "storage.encryption_key"
        )
    else:
        fix = f"the key is wrong (check {ENVIRONMENT_KEY}), or it is not a meterflow database"
    return EncryptionKeyError(f"cannot open {shown_as}: {fix}")


def _path(database: str | Path, *, uri: bool) -> Path:
    text = str(database)
    if uri and text.startswith("file:"):
        text = text.removeprefix("file:").split("?", 1)[0]
    return Path(text)


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, waiting for its thread to stop when opening fails.

    After a failed connect aiosqlite stops its thread and drops the future the thread
    answers; a command ending on the failure (a wrong key) closes its event loop first,
    and the thread dies printing a traceback after the one-line refusal.
    """

    _stopping: asyncio.Future[Any] | None = None

    def stop(self) -> asyncio.Future[Any] | None:
        self._stopping = super().stop()
        return self._stopping

    async def _connect(self) -> aiosqlite.Connection:
        try:
            return await super()._connect()
        except BaseException:
            if self._stopping is not None:
                await self._stopping
            raise


def async_dbapi(key: str | None) -> AsyncAdapt_aiosqlite_dbapi:
    """SQLAlchemy's aiosqlite DB-API module, its connections opened by `connect` (keyed
    with `key`, checked) in aiosqlite's thread, its exception classes those that
    connection raises."""
    driver = sqlite3 if key is None else sqlcipher()

    def open_async(database: str, **options: Any) -> aiosqlite.Connection:  # noqa: ANN401
        opener: Callable[[], sqlite3.Connection] = lambda: connect(database, key, **options)  # noqa: E731
        return _Connection(opener, iter_chunk_size=64)

    names = (
        *("DatabaseError", "Error", "IntegrityError", "NotSupportedError", "OperationalError"),
        *("ProgrammingError", "sqlite_version", "sqlite_version_info"),
    )
    module = SimpleNamespace(
        Connection=aiosqlite.Connection,
        connect=open_async,
        **{name: getattr(driver, name) for name in names},
    )
    return AsyncAdapt_aiosqlite_dbapi(module, driver)  # type: ignore[arg-type]
