"""Partition pruning for SQLite: name only the months a time range touches.

PostgreSQL skips partitions outside a query's range by itself. SQLite evaluates every arm
of the `energy_data` view (each an index probe that finds nothing), which is cheap but
not free; meterflow's own queries name the partitions of their range instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from partitions.naming import Month


def months_between(start: datetime, end: datetime) -> list[Month]:
    """Every month that [start, end) touches, oldest first."""
    months = []
    month, last = Month.of(start), Month.of(end)
    while month < last or (month == last and month.start < end):
        months.append(month)
        month = month.next()
    return months


def source_for(
    start: datetime, end: datetime, existing: Iterable[Month], columns: Sequence[str]
) -> str:
    """A FROM item reading [start, end): one partition, a UNION ALL of a few, or none.

    The caller still filters on recorded_at; this only leaves out months that cannot hold
    a matching row.
    """
    present = set(existing)
    tables = [m.table_name for m in months_between(start, end) if m in present]
    if len(tables) == 1:
        return tables[0]
    column_list = ", ".join(f'"{name}"' for name in columns)
    if not tables:
        empty = ", ".join(f'NULL AS "{name}"' for name in columns)
        return f"(SELECT {empty} WHERE 0 = 1)"
    return "(" + " UNION ALL ".join(f"SELECT {column_list} FROM {t}" for t in tables) + ")"
