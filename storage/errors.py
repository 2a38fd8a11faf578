"""Errors raised by the storage package.

StorageError
├── UnsupportedDatabaseError   a URL naming a database meterflow does not speak
├── WriteError                 a batch that could not be stored, with the cause
├── SchemaVersionError         a database at another schema version, with the fix
├── DatabaseInUseError         a database another daemon or a restore holds (`held_by`)
├── DatabaseUnavailableError   a database server out of reach now; worth trying again
├── EncryptionKeyError         a SQLite file the configured key (or no key) does not open
└── QueryError                 a read-only query the database refused, with its reason
"""

from __future__ import annotations


def database_said(error: BaseException | None) -> str:
    """What the database or its driver said, on one line, without the driver's class name
    (SQLAlchemy's asyncpg adapter puts `<class '...'>: ` before the server's message)."""
    text = str(error)
    if text.startswith("<class '") and "'>: " in text:
        text = text.split("'>: ", 1)[1]
    return " ".join(text.split())


class StorageError(Exception):
    """Base class of every error the storage package raises."""


class DatabaseUnavailableError(StorageError):
    """The database server cannot be reached now; trying again may succeed."""


class EncryptionKeyError(StorageError):
    """A SQLite file that `storage.encryption_key` does not open: encrypted and no key or
    the wrong one, or not encrypted and a key given (storage/cipher.py)."""


class UnsupportedDatabaseError(StorageError, ValueError):
    """The database URL names a backend meterflow does not support."""

    def __init__(self, url: str, hint: str | None = None) -> None:
        super().__init__(
            f"unsupported database URL {url!r}: "
            f"{hint or 'use sqlite:///PATH or postgresql://USER@HOST/DATABASE'}"
        )
        self.url = url


class WriteError(StorageError):
    """A batch (or upkeep's transaction) failed for a reason retrying cannot fix; the
    daemon stops with it, leaving the batch's messages unacknowledged."""


class SchemaVersionError(StorageError):
    """The database's schema is older or newer than the one this meterflow speaks."""

    def __init__(self, found: int, needed: int, url: str) -> None:
        if found < needed:
            advice = f"run `meterflow db upgrade --db {url}` first"
        else:
            advice = "this meterflow is older than the database; upgrade meterflow"
        super().__init__(f"database schema is version {found}, meterflow needs {needed}: {advice}")
        self.found, self.needed, self.url = found, needed, url


class DatabaseInUseError(StorageError):
    """Another meterflow process (a daemon, a restore) holds the database."""

    def __init__(self, what: str, held_by: str | None = None) -> None:
        super().__init__(
            f"{what} is in use by another meterflow process "
            f"({held_by or 'a running daemon, or a restore'}): stop it first"
        )
        self.what = what
        self.held_by = held_by


class QueryError(StorageError):
    """A read-only query that was refused: a write, ATTACH, or SQL the database rejects."""
