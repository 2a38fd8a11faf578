"""The `energy_data` view: one name over every monthly partition."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Table

from partitions.naming import BASE_NAME, Month

VIEW_NAME = BASE_NAME


def view_ddl(months: Iterable[Month], template: Table) -> str:
    """`CREATE VIEW energy_data` as a UNION ALL of the given months' partitions.

    With no partition yet the view still exists, empty, so analysts' queries work on a
    fresh database instead of failing on a missing name.
    """
    columns: Sequence[str] = [column.name for column in template.columns]
    column_list = ", ".join(f'"{name}"' for name in columns)
    selects = [f"SELECT {column_list} FROM {month.table_name}" for month in sorted(months)]
    if not selects:
        empty = ", ".join(f'NULL AS "{name}"' for name in columns)
        selects = [f"SELECT {empty} WHERE 0 = 1"]
    return f"CREATE VIEW {VIEW_NAME} AS\n" + "\nUNION ALL\n".join(selects)


def drop_view_ddl() -> str:
    return f"DROP VIEW IF EXISTS {VIEW_NAME}"
