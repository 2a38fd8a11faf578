"""Time series imported from CSV: a dynamic tariff's import prices by the quarter hour or
hour, as day-ahead markets publish them (`meterflow prices import`), and a grid zone's
carbon intensity (`meterflow carbon import`).

A file has a header and one value per row: `start,end,<value>`, or `start,<value>` with
the resolution given (15 or 60 minutes); the value's column is `price` or `g_per_kwh`.
Times are ISO 8601 with their offset; every start and end lies on a quarter hour. The
values land in `dynamic_prices` or `carbon_intensity`, one row per span, replacing what an
earlier import said of the span they cover; storage/tariffs.py puts them in the
timeline, and where nothing was imported there is no value.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.errors import StorageError
from storage.tables import carbon_intensity, dynamic_prices

SeriesKind = Literal["price", "carbon"]


@dataclass(frozen=True, slots=True)
class _Series:
    table: Table
    key: str
    column: str


_SERIES: dict[SeriesKind, _Series] = {
    "price": _Series(dynamic_prices, "tariff", "price"),
    "carbon": _Series(carbon_intensity, "zone", "g_per_kwh"),
}


class SeriesFileError(StorageError):
    """A file that cannot be read as a time series; the message names the line."""


@dataclass(frozen=True, slots=True)
class Span:
    """A value (a price per kWh, g CO2 per kWh) holding in [start, until), UTC."""

    start: datetime
    until: datetime
    value: float


def read_series(path: Path, kind: SeriesKind, resolution: timedelta | None = None) -> list[Span]:
    """The values of a CSV file, in order; SeriesFileError names the first bad line."""
    column = _SERIES[kind].column
    try:
        with path.open(newline="", encoding="utf-8-sig") as source:
            rows = list(csv.reader(source))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SeriesFileError(f"{path}: cannot be read ({exc})") from None
    if not rows:
        raise SeriesFileError(f"{path}: empty, expected a header: start,end,{column}")
    header = [name.strip().lower() for name in rows[0]]
    if header not in (["start", "end", column], ["start", column]):
        raise SeriesFileError(
            f"{path} line 1: expected the header start,end,{column} or start,{column}"
        )
    step = None if len(header) == 3 else resolution
    if len(header) == 2 and step is None:
        raise SeriesFileError(f"{path}: no end column: give --resolution 15 or 60 (minutes)")
    spans = [
        _span(f"{path} line {number}", row, step, column)
        for number, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)
    ]
    for before, after in itertools.pairwise(spans):
        if after.start < before.until:
            raise SeriesFileError(
                f"{path}: the rows from {before.start.isoformat()} and "
                f"{after.start.isoformat()} overlap (rows must be in order, one per span)"
            )
    if not spans:
        raise SeriesFileError(f"{path}: no values")
    return spans


def _span(where: str, row: Sequence[str], step: timedelta | None, column: str) -> Span:
    """A row's value; with `step`, a row has no end and the value holds that long."""
    cells = [cell.strip() for cell in row]
    expected = 3 if step is None else 2
    if len(cells) != expected:
        raise SeriesFileError(f"{where}: expected {expected} values, got {len(cells)}")
    start = _time(where, "start", cells[0])
    until = start + step if step is not None else _time(where, "end", cells[1])
    if until <= start:
        raise SeriesFileError(f"{where}: end {cells[1]} is not after start {cells[0]}")
    try:
        value = float(cells[-1])
    except ValueError:
        raise SeriesFileError(f"{where}: {column} {cells[-1]!r} is not a number") from None
    if not math.isfinite(value):
        raise SeriesFileError(f"{where}: {column} {cells[-1]!r} is not a finite number")
    return Span(start, until, value)


def _time(where: str, name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SeriesFileError(f"{where}: {name} {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise SeriesFileError(f"{where}: {name} {text!r} needs a UTC offset (e.g. +01:00 or Z)")
    utc = moment.astimezone(UTC)
    if utc.minute % 15 or utc.second or utc.microsecond:
        raise SeriesFileError(f"{where}: {name} {text!r} is not on a quarter hour")
    return utc


async def store_series(
    conn: AsyncConnection, kind: SeriesKind, key: str, spans: Sequence[Span]
) -> None:
    """Store the spans (in order) of a tariff's prices or a zone's intensity, in place of
    every span stored for it that overlaps what they cover."""
    series = _SERIES[kind]
    table = series.table
    await conn.execute(
        delete(table).where(
            table.c[series.key] == key,
            table.c.start < spans[-1].until,
            table.c.until > spans[0].start,
        )
    )
    await conn.execute(
        insert(table),
        [
            {series.key: key, "start": s.start, "until": s.until, series.column: s.value}
            for s in spans
        ],
    )


async def stored_series(conn: AsyncConnection, kind: SeriesKind) -> dict[str, list[Span]]:
    """Every tariff's prices, or every zone's intensity, in order."""
    series = _SERIES[kind]
    table = series.table
    result = await conn.execute(
        select(table.c[series.key], table.c.start, table.c.until, table.c[series.column]).order_by(
            table.c[series.key], table.c.start
        )
    )
    found: dict[str, list[Span]] = {}
    for key, start, until, value in result:
        found.setdefault(key, []).append(Span(start, until, value))
    return found
