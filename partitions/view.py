"""The `energy_data` view: one name over every monthly partition.

SQLite refuses a compound SELECT of more than 500 terms (SQLITE_MAX_COMPOUND_SELECT), which
a UNION ALL over monthly tables reaches after 41 years of months. Past `MAX_TERMS` months
the view is built in two levels: chunk views of up to `MAX_TERMS` months each, and
`energy_data` over the chunks. SQLite pushes a query's conditions down through both.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from sqlalchemy import Table

from partitions.naming import BASE_NAME, Month

VIEW_NAME = BASE_NAME
MAX_TERMS = 400
CHUNK_PREFIX = f"{BASE_NAME}_chunk_"


def view_ddl(months: Iterable[Month], template: Table) -> list[str]:
    """The statements creating `energy_data` as a UNION ALL of the given months' partitions.

    With no partition yet the view still exists, empty, so analysts' queries work on a
    fresh database instead of failing on a missing name.
    """
    return view_over([month.table_name for month in sorted(months)], template)


def view_over(
    tables: Sequence[str],
    template: Table,
    *,
    temporary: bool = False,
    missing: Mapping[str, Collection[str]] | None = None,
) -> list[str]:
    """`CREATE [TEMP] VIEW` statements for `energy_data` over `tables` (qualified allowed);
    `missing` names the template's columns a table lacks (an older archive), NULL there."""
    names = [column.name for column in template.columns]
    kind = "TEMP VIEW" if temporary else "VIEW"
    if not tables:
        empty = ", ".join(f'NULL AS "{name}"' for name in names)
        return [f"CREATE {kind} {VIEW_NAME} AS SELECT {empty} WHERE 0 = 1"]
    selects = [_select(table, names, (missing or {}).get(table, ())) for table in tables]
    if len(tables) <= MAX_TERMS:
        return [_union(kind, VIEW_NAME, selects)]
    chunks = [selects[i : i + MAX_TERMS] for i in range(0, len(selects), MAX_TERMS)]
    views = [f"{CHUNK_PREFIX}{number}" for number in range(1, len(chunks) + 1)]
    statements = [_union(kind, view, chunk) for view, chunk in zip(views, chunks, strict=True)]
    statements.append(_union(kind, VIEW_NAME, [_select(view, names, ()) for view in views]))
    return statements


def drop_view_ddl(views: Iterable[str]) -> list[str]:
    """DROP statements for `energy_data` and its chunk views among a database's `views`."""
    ours = [name for name in views if name == VIEW_NAME or name.startswith(CHUNK_PREFIX)]
    # energy_data first: it depends on the chunks.
    return [f"DROP VIEW IF EXISTS {name}" for name in sorted(ours, key=lambda n: n != VIEW_NAME)]


def _select(table: str, names: Sequence[str], missing: Collection[str]) -> str:
    columns = ", ".join(f'NULL AS "{n}"' if n in missing else f'"{n}"' for n in names)
    return f"SELECT {columns} FROM {table}"


def _union(kind: str, name: str, selects: Sequence[str]) -> str:
    return f"CREATE {kind} {name} AS\n" + "\nUNION ALL\n".join(selects)
