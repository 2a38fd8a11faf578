"""Knowing who uses a SQLite database: a lock file beside it.

A daemon holds an exclusive `flock` on `<database>.lock` while it runs, its PID written in
the file, and so does an operation that replaces the database (`meterflow restore`): a
second daemon on the same database, or a restore under a running daemon, is refused at
once, naming the process that holds it. The kernel drops the lock when a process dies, so
a killed daemon never leaves the database marked as used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from storage.engine import database_directory, sqlite_path
from storage.errors import DatabaseInUseError, StorageError

LOCK_SUFFIX = ".lock"


def lock_file(database: Path) -> Path:
    return database.with_name(database.name + LOCK_SUFFIX)


class Holder:
    """What the lock file says of the process holding it, for `meterflow status` and for
    whoever is refused."""

    def __init__(self, descriptor: int, holder: str) -> None:
        self._descriptor = descriptor
        self._said = f"{holder}, pid {os.getpid()}"
        self._write(self._said)

    def note_endpoint(self, endpoint: str) -> None:
        self._write(f"{self._said}, endpoint {endpoint}")

    def _write(self, text: str) -> None:
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, text.encode(), 0)


@contextlib.contextmanager
def _held(database: Path, holder: str) -> Iterator[Holder]:
    database_directory(database)
    try:
        descriptor = os.open(lock_file(database), os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise StorageError(
            f"cannot create {lock_file(database)}: {exc.strerror or exc}; give storage.url "
            "(--db) a place this user can write to"
        ) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUseError(str(database), _said(descriptor) or None) from None
        yield Holder(descriptor, holder)
    finally:
        os.close(descriptor)


def _said(descriptor: int) -> str:
    return os.pread(descriptor, 500, 0).decode(errors="replace").strip()


@contextlib.contextmanager
def used_by_daemon(url: str) -> Iterator[Holder | None]:
    """Hold the SQLite database at `url` for this daemon during the block; DatabaseInUseError
    if another daemon or a restore holds it (PostgreSQL: nothing to do, None)."""
    database = sqlite_path(url)
    if database is None:
        yield None
        return
    with _held(database, "a daemon") as holder:
        yield holder


def exclusively(
    database: Path, holder: str = "a restore"
) -> contextlib.AbstractContextManager[Holder]:
    """Hold the database against daemons for `holder` (what replaces it, in words);
    DatabaseInUseError if one is running."""
    return _held(database, holder)


def daemon_endpoint(url: str) -> str | None:
    """The endpoint the daemon running on the SQLite database at `url` serves, if any."""
    database = sqlite_path(url)
    if database is None or not lock_file(database).exists():
        return None
    descriptor = os.open(lock_file(database), os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            said = _said(descriptor)
            return said.split(", endpoint ", 1)[1] if ", endpoint " in said else None
        return None  # nobody holds it: no daemon runs
    finally:
        os.close(descriptor)
