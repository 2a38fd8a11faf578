"""Read-only SQL for analysts and operators, optionally over archived months too.

SQLite: the database is opened read-only (`mode=ro`) with writes refused outright
(`query_only`, an authorizer denying ATTACH and DETACH); with archives, a temporary
`energy_data` view over the live and the archived months shadows the stored one.
PostgreSQL: the statement runs in a READ ONLY transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import asyncpg
from sqlalchemy.exc import DBAPIError

from partitions import missing_columns, month_of_table
from partitions.sqlite_store import ARCHIVE_SUFFIX
from partitions.store import archived_months
from partitions.view import view_over
from storage import cipher
from storage.backend import Rows
from storage.engine import open_engine, sqlite_file
from storage.errors import QueryError, database_said
from storage.tables import energy_partition

_DENIED = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}
# What the authorizer sees of a statement that would change something.
_WRITES = {
    sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE, sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_DROP_VTABLE, sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT,
}  # fmt: skip
# PostgreSQL's read_only_sql_transaction.
READ_ONLY_SQLSTATE = "25006"
READ_ONLY = "read-only: writes are refused (`query sql` only reads)"


def archives_in(directory: Path) -> list[Path]:
    """The archived SQLite months in a directory, oldest first."""
    return [path for _, path in archived_months(directory, ARCHIVE_SUFFIX)]


def query_sqlite(url: str, sql: str, archives: Sequence[Path] = (), *, key: str | None) -> Rows:
    """`sql` on the SQLite database at `url` (encrypted with `key`, if any) and its
    `archives`, read-only."""
    path = sqlite_file(url, "a read-only query")
    conn = cipher.connect(f"file:{path}?mode=ro", key, uri=True)
    with contextlib.closing(conn):
        if archives:
            _include(conn, archives, key)
        conn.execute("PRAGMA query_only = ON")
        writes: list[int] = []
        conn.set_authorizer(partial(_authorize, writes))
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchall()
        except (*cipher.DatabaseError, *cipher.ProgrammingError) as exc:
            raise QueryError(READ_ONLY if writes else f"query refused: {exc}") from None
        columns = [d[0] for d in cursor.description or ()]
        return columns, rows


def _include(conn: sqlite3.Connection, archives: Sequence[Path], key: str | None) -> None:
    live = sorted(
        month
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if (month := month_of_table(name)) is not None
    )
    tables = [f"main.{month.table_name}" for month in live]
    template = energy_partition("energy_data_template")
    missing: dict[str, list[str]] = {}
    for index, archive in enumerate(archives):
        month = month_of_table(archive.name.removesuffix(ARCHIVE_SUFFIX))
        if month is None:
            continue
        cipher.attach(conn, f"file:{archive}?mode=ro", f"archive_{index}", key)
        table = f"archive_{index}.{month.table_name}"
        tables.append(table)
        missing[table] = missing_columns(
            conn, f"archive_{index}", month.table_name, (c.name for c in template.columns)
        )
    for statement in view_over(tables, template, temporary=True, missing=missing):
        conn.execute(statement)


def _authorize(writes: list[int], action: int, _: object, value: object, *__: object) -> int:
    # A PRAGMA with a value sets something (journal_mode = DELETE, say).
    if action in _WRITES or (action == sqlite3.SQLITE_PRAGMA and value is not None):
        writes.append(action)
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY if action in _DENIED else sqlite3.SQLITE_OK


async def query_postgres(url: str, sql: str) -> Rows:
    engine = open_engine(url)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                result = await conn.exec_driver_sql(sql)
            except DBAPIError as exc:
                if isinstance(exc.orig, asyncpg.ReadOnlySQLTransactionError) or (
                    getattr(exc.orig, "sqlstate", None) == READ_ONLY_SQLSTATE
                ):
                    raise QueryError(READ_ONLY) from None
                raise QueryError(f"query refused: {database_said(exc.orig)}") from None
            if not result.returns_rows:
                return [], []
            return list(result.keys()), [tuple(row) for row in result]
    finally:
        await engine.dispose()
