"""Backups and restores: SQLite online and compressed; PostgreSQL through pg_dump.

SQLite's backup API copies the database page by page under a read transaction, so the copy
is one consistent state even while the writer commits; the copy of an encrypted database
is encrypted with the same key (storage/cipher.py). Backups are gzip files readable by
their owner only; the newest `keep` are kept. PostgreSQL backups are pg_dump's custom
format, restored by pg_restore.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from sqlalchemy.engine import make_url

from storage import cipher
from storage.engine import DAEMON_APPLICATION, open_engine, sqlite_file, sqlite_path
from storage.errors import DatabaseInUseError, StorageError
from storage.inuse import exclusively

PREFIX = "meterflow-"
SUFFIX = ".db.gz"


def backup_sqlite(url: str, directory: Path, *, key: str | None, keep: int = 7) -> Path:
    """Back up the SQLite database at `url` (encrypted with `key`, if any) into
    `directory`; return the new file."""
    source_path = sqlite_file(url, "backup (on PostgreSQL use pg_dump)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"{PREFIX}{stamp}{SUFFIX}"
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        copy = Path(scratch) / "copy.db"
        source = cipher.connect(f"file:{source_path}?mode=ro", key, uri=True)
        try:
            destination = cipher.connect(copy, key)
            with contextlib.closing(destination):
                source.backup(destination)
        finally:
            source.close()
        descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with (
            os.fdopen(descriptor, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb") as out,
            copy.open("rb") as data,
        ):
            shutil.copyfileobj(data, out)
    for old in sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))[:-keep]:
        old.unlink()
    return target


def restore_sqlite(backup: Path, url: str, *, key: str | None, force: bool = False) -> Path:
    """Replace the SQLite database at `url` with a backup (gzipped or not); return its path.

    Refused while a daemon uses the database, and over an existing database unless
    `force`. The backup is checked (integrity_check, meterflow's tables) before it
    replaces anything, and the old database's WAL is removed so it cannot be replayed
    onto the restored file.
    """
    target = sqlite_path(url)
    if target is None or not target.name:
        raise StorageError(f"restore of a SQLite backup needs a sqlite:/// URL, not {url!r}")
    with exclusively(target):
        if target.exists() and not force:
            raise StorageError(f"{target} exists: pass --force to replace it with the backup")
        scratch = target.with_name(target.name + ".restoring")
        descriptor = os.open(scratch, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "wb") as out, _open_backup(backup) as data:
            shutil.copyfileobj(data, out)
            out.flush()
            os.fsync(out.fileno())
        try:
            _check_restorable(scratch, backup, key)
        except BaseException:
            scratch.unlink()
            raise
        for leftover in ("-wal", "-shm"):
            target.with_name(target.name + leftover).unlink(missing_ok=True)
        scratch.replace(target)
    return target


def _open_backup(backup: Path) -> IO[bytes]:
    with backup.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    if compressed:
        return cast(IO[bytes], gzip.open(backup, "rb"))
    return backup.open("rb")


def _check_restorable(copy: Path, backup: Path, key: str | None) -> None:
    try:
        conn = cipher.connect(f"file:{copy}?mode=ro", key, shown_as=backup, uri=True)
        with contextlib.closing(conn):
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except cipher.DatabaseError as exc:
        raise StorageError(f"{backup} is not a SQLite database: {exc}") from exc
    if integrity != ["ok"]:
        raise StorageError(f"{backup} fails its integrity check: {'; '.join(integrity[:5])}")
    if "iot_devices" not in tables:
        raise StorageError(f"{backup} is not a meterflow database (no iot_devices table)")


PG_SUFFIX = ".pgdump"


def backup_postgres(url: str, directory: Path, keep: int = 7) -> Path:
    """`pg_dump --format=custom` of the database into `directory`; the newest `keep` stay."""
    pg_dump = _tool("pg_dump")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = directory / f"{PREFIX}{stamp}{PG_SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    _run([pg_dump, "--format=custom", "--file", str(partial), libpq_url(url)])
    partial.chmod(0o600)
    partial.replace(target)
    for old in sorted(directory.glob(f"{PREFIX}*{PG_SUFFIX}"))[:-keep]:
        old.unlink()
    return target


def restore_postgres(backup: Path, url: str, *, in_use: bool, force: bool) -> None:
    """`pg_restore --clean` a pg_dump backup into the database at `url`.

    `in_use`: whether daemons are connected (the caller asks the server); refused then.
    """
    if in_use:
        raise DatabaseInUseError(libpq_url(url, hide_password=True))
    if not force:
        raise StorageError("restoring replaces the database's tables: pass --force to do it")
    pg_restore = _tool("pg_restore")
    _run([pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--dbname", libpq_url(url), str(backup)])  # fmt: skip


def libpq_url(url: str, *, hide_password: bool = False) -> str:
    """The URL as PostgreSQL's own tools take it (no SQLAlchemy driver name)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=hide_password)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StorageError(
            f"{name} not found: install PostgreSQL's client tools (postgresql-client)"
        )
    return path


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise StorageError(f"{Path(command[0]).name} failed: {done.stderr.strip()}")


async def daemons_connected(url: str) -> int:
    """How many meterflow daemon sessions the PostgreSQL database at `url` has."""
    engine = open_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                f"AND application_name = '{DAEMON_APPLICATION}'"
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()
