"""SQLite: a month is archived as its own SQLite file holding that month's table.

The work runs in a thread on connections of its own (the sqlite3 module's API, because
ATTACH cannot happen inside the transaction SQLAlchemy opens), opened and attached by the
`SQLiteFiles` the store is given: an encrypted database's (storage/cipher.py) makes its
archives encrypted with the same key. Archiving holds the live database's write lock from
the copy to the drop, so no reading can arrive in between; the copy is committed (and
synced) in the archive file before the live table is dropped. Run again after a crash, it
merges into the existing file and finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import Table

from partitions.errors import PartitionError
from partitions.naming import Month, month_of_table
from partitions.shape import add_missing_columns, missing_columns
from partitions.store import PartitionInfo, set_aside
from partitions.view import drop_view_ddl, view_ddl

log = structlog.get_logger("meterflow.partitions")


class SQLiteFiles(Protocol):
    """Opens and attaches SQLite files, with the database's encryption key if it has one."""

    def connect(self, database: str | Path, **options: Any) -> sqlite3.Connection:  # noqa: ANN401
        """sqlite3.connect, keyed."""
        ...

    def attach(self, conn: sqlite3.Connection, database: str, alias: str) -> None:
        """ATTACH DATABASE, keyed."""
        ...


ARCHIVE_SUFFIX = ".db"
_KEY = "device_id, data_type, recorded_at"


class SQLitePartitionStore:
    def __init__(
        self, path: Path, template: Table, files: SQLiteFiles, busy_timeout_ms: int = 5000
    ) -> None:
        self._path = path
        self._template = template
        self._files = files
        self._busy_timeout_ms = busy_timeout_ms

    async def inventory(self) -> list[PartitionInfo]:
        return await asyncio.to_thread(self._inventory)

    async def drop(self, month: Month) -> int:
        return await asyncio.to_thread(self._drop, month)

    async def archive(self, month: Month, directory: Path) -> Path:
        return await asyncio.to_thread(self._archive, month, directory)

    async def restore(self, path: Path) -> tuple[Month, int]:
        return await asyncio.to_thread(self._restore, path)

    @contextlib.contextmanager
    def _connect(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        conn = self._files.connect(path or self._path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            yield conn
        finally:
            conn.close()

    def _inventory(self) -> list[PartitionInfo]:
        with self._connect() as conn:
            infos = []
            for month in _months(conn):
                table = month.table_name
                rows, first, last = conn.execute(
                    f"SELECT count(*), min(recorded_at), max(recorded_at) FROM {table}"
                ).fetchone()
                (size,) = (
                    conn.execute(
                        # Aggregated per table and index: one row each, not one per page.
                        "SELECT sum(pgsize) FROM dbstat('main', 1) WHERE name IN "
                        "(SELECT name FROM sqlite_master WHERE tbl_name = ?)",
                        (table,),
                    ).fetchone()
                    if _has_dbstat(conn)
                    else (None,)
                )
                infos.append(PartitionInfo(month, rows, size, _time(first), _time(last)))
            return infos

    def _drop(self, month: Month) -> int:
        with self._connect() as conn, _transaction(conn, "BEGIN IMMEDIATE"):
            rows = _require(conn, month)
            conn.execute(f"DROP TABLE {month.table_name}")
            self._rebuild_view(conn)
        return rows

    def _archive(self, month: Month, directory: Path) -> Path:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = directory / f"{month.table_name}{ARCHIVE_SUFFIX}"
        with contextlib.suppress(FileExistsError):
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        table = month.table_name
        with self._connect() as live, self._connect(target) as archive:
            archive.execute("PRAGMA synchronous=FULL")
            with _transaction(live, "BEGIN IMMEDIATE"):
                rows = _require(live, month)
                (ddl,) = live.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()
                self._files.attach(archive, str(self._path), "live")
                with _transaction(archive, "BEGIN"):
                    archive.execute(ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
                    archive.execute(
                        f"INSERT OR IGNORE INTO main.{table} SELECT * FROM live.{table}"
                    )
                    (missing,) = archive.execute(
                        f"SELECT count(*) FROM (SELECT {_KEY} FROM live.{table} "
                        f"EXCEPT SELECT {_KEY} FROM main.{table})"
                    ).fetchone()
                    if missing:
                        raise PartitionError(
                            f"{missing} readings of {month} did not reach {target}"
                        )
                archive.execute("DETACH live")
                live.execute(f"DROP TABLE {table}")
                self._rebuild_view(live)
        log.info("partition archived", month=str(month), rows=rows, file=str(target))
        return target

    def _restore(self, path: Path) -> tuple[Month, int]:
        month = month_of_table(path.name.removesuffix(ARCHIVE_SUFFIX))
        if month is None or not path.name.endswith(ARCHIVE_SUFFIX):
            raise PartitionError(f"{path.name} is not an archived month (energy_data_YYYY_MM.db)")
        table = month.table_name
        # An archive of an older shape lacks the columns added since: they stay NULL.
        names = [c.name for c in self._template.columns if c.name != "id"]
        with self._connect() as live:
            self._files.attach(live, str(path), "archive")
            try:
                with _transaction(live, "BEGIN IMMEDIATE"):
                    found = live.execute(
                        "SELECT sql FROM archive.sqlite_master WHERE type = 'table' AND name = ?",
                        (table,),
                    ).fetchone()
                    if found is None:
                        raise PartitionError(f"{path} holds no table {table}")
                    live.execute(found[0].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
                    add_missing_columns(live, table, self._template)
                    kept = missing_columns(live, "archive", table, names)
                    columns = ", ".join(f'"{name}"' for name in names if name not in kept)
                    before = live.total_changes
                    live.execute(
                        f"INSERT INTO main.{table} ({columns}) SELECT {columns} "
                        f"FROM archive.{table} WHERE true ON CONFLICT DO NOTHING"
                    )
                    added = live.total_changes - before
                    self._rebuild_view(live)
            finally:
                live.execute("DETACH archive")
        set_aside(path)
        return month, added

    def _rebuild_view(self, conn: sqlite3.Connection) -> None:
        views = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
        for statement in [*drop_view_ddl(views), *view_ddl(_months(conn), self._template)]:
            conn.execute(statement)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _months(conn: sqlite3.Connection) -> list[Month]:
    names = conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'").fetchall()
    return sorted(m for (name,) in names if (m := month_of_table(name)) is not None)


def _require(conn: sqlite3.Connection, month: Month) -> int:
    if month not in _months(conn):
        raise PartitionError(f"there is no partition for {month}")
    (rows,) = conn.execute(f"SELECT count(*) FROM {month.table_name}").fetchone()
    return int(rows)


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    (built_in,) = conn.execute("SELECT sqlite_compileoption_used('ENABLE_DBSTAT_VTAB')").fetchone()
    return bool(built_in)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)
