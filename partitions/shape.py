"""SQLite: month tables of an older shape, such as archives written by an earlier meterflow,
which lack columns added to readings since (schema v6 added `interval_start`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite


def missing_columns(
    conn: sqlite3.Connection, schema: str, table: str, columns: Iterable[str]
) -> list[str]:
    """Which of `columns` the table `schema.table` lacks, in the order given."""
    present = {row[1] for row in conn.execute(f'PRAGMA "{schema}".table_info("{table}")')}
    return [name for name in columns if name not in present]


def add_missing_columns(conn: sqlite3.Connection, table: str, template: Table) -> list[str]:
    """Give the main database's `table` the columns of `template` it lacks (added last, as
    migrations add them); return their names."""
    missing = missing_columns(conn, "main", table, (c.name for c in template.columns))
    for name in missing:
        kind = template.c[name].type.compile(dialect=sqlite.dialect())
        conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')
    return missing
