"""Knowing whether a daemon is using a SQLite database: a lock file beside it.

A daemon holds a shared `flock` on `<database>.lock` while it runs (several may); an
operation that replaces the database (`meterflow restore`) needs it exclusively and fails
at once when a daemon holds it. The kernel drops the lock when a process dies, so a
killed daemon never leaves the database marked as used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from storage.engine import sqlite_path
from storage.errors import DatabaseInUseError

LOCK_SUFFIX = ".lock"


def lock_file(database: Path) -> Path:
    return database.with_name(database.name + LOCK_SUFFIX)


@contextlib.contextmanager
def _locked(database: Path, operation: int) -> Iterator[None]:
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(lock_file(database), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DatabaseInUseError(str(database)) from exc
        yield
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def used_by_daemon(url: str) -> Iterator[None]:
    """Mark the SQLite database at `url` as in use for the block (PostgreSQL: nothing to do)."""
    database = sqlite_path(url)
    if database is None:
        yield
        return
    with _locked(database, fcntl.LOCK_SH):
        yield


def exclusively(database: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the database against daemons; DatabaseInUseError if one is running."""
    return _locked(database, fcntl.LOCK_EX)
