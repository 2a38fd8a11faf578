"""Dynamic prices: a tariff's import prices by the quarter hour or hour, as day-ahead
markets publish them, imported from CSV (`meterflow prices import`).

A file has a header and one price per row: `start,end,price`, or `start,price` with the
resolution given (15 or 60 minutes). Times are ISO 8601 with their offset; every start
and end lies on a quarter hour. The prices land in `dynamic_prices`, one row per span,
replacing what an earlier import said of the span they cover; storage/tariffs.py puts them in
the tariff's timeline, and where no price was imported the tariff has none.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.errors import StorageError
from storage.tables import dynamic_prices


class PriceFileError(StorageError):
    """A price file that cannot be read as prices; the message names the line."""


@dataclass(frozen=True, slots=True)
class DynamicPrice:
    """The import price per kWh in [start, end), UTC."""

    start: datetime
    until: datetime
    price: float


def read_prices(path: Path, resolution: timedelta | None = None) -> list[DynamicPrice]:
    """The prices of a CSV file, in order; PriceFileError names the first bad line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as source:
            rows = list(csv.reader(source))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PriceFileError(f"{path}: cannot be read ({exc})") from None
    if not rows:
        raise PriceFileError(f"{path}: empty, expected a header: start,end,price")
    header = [name.strip().lower() for name in rows[0]]
    if header not in (["start", "end", "price"], ["start", "price"]):
        raise PriceFileError(f"{path} line 1: expected the header start,end,price or start,price")
    step = None if len(header) == 3 else resolution
    if len(header) == 2 and step is None:
        raise PriceFileError(f"{path}: no end column: give --resolution 15 or 60 (minutes)")
    prices = [
        _price(f"{path} line {number}", row, step)
        for number, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)
    ]
    for before, after in itertools.pairwise(prices):
        if after.start < before.until:
            raise PriceFileError(
                f"{path}: the prices from {before.start.isoformat()} and "
                f"{after.start.isoformat()} overlap (rows must be in order, one per span)"
            )
    if not prices:
        raise PriceFileError(f"{path}: no prices")
    return prices


def _price(where: str, row: Sequence[str], step: timedelta | None) -> DynamicPrice:
    """A row's price; with `step`, a row has no end and the price holds that long."""
    cells = [cell.strip() for cell in row]
    expected = 3 if step is None else 2
    if len(cells) != expected:
        raise PriceFileError(f"{where}: expected {expected} values, got {len(cells)}")
    start = _time(where, "start", cells[0])
    until = start + step if step is not None else _time(where, "end", cells[1])
    if until <= start:
        raise PriceFileError(f"{where}: end {cells[1]} is not after start {cells[0]}")
    try:
        price = float(cells[-1])
    except ValueError:
        raise PriceFileError(f"{where}: price {cells[-1]!r} is not a number") from None
    if not math.isfinite(price):
        raise PriceFileError(f"{where}: price {cells[-1]!r} is not a finite number")
    return DynamicPrice(start, until, price)


def _time(where: str, name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PriceFileError(f"{where}: {name} {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise PriceFileError(f"{where}: {name} {text!r} needs a UTC offset (e.g. +01:00 or Z)")
    utc = moment.astimezone(UTC)
    if utc.minute % 15 or utc.second or utc.microsecond:
        raise PriceFileError(f"{where}: {name} {text!r} is not on a quarter hour")
    return utc


async def store_prices(conn: AsyncConnection, tariff: str, prices: Sequence[DynamicPrice]) -> None:
    """Store the prices of `tariff` (in order), in place of every price stored for it that
    overlaps the span they cover."""
    table = dynamic_prices
    await conn.execute(
        delete(table).where(
            table.c.tariff == tariff,
            table.c.start < prices[-1].until,
            table.c.until > prices[0].start,
        )
    )
    await conn.execute(
        insert(table),
        [{"tariff": tariff, "start": p.start, "until": p.until, "price": p.price} for p in prices],
    )


async def stored_prices(conn: AsyncConnection) -> dict[str, list[DynamicPrice]]:
    """Every tariff's imported prices, in order."""
    result = await conn.execute(select(dynamic_prices).order_by("tariff", "start"))
    prices: dict[str, list[DynamicPrice]] = {}
    for row in result:
        prices.setdefault(row.tariff, []).append(
            DynamicPrice(_utc(row.start), _utc(row.until), row.price)
        )
    return prices


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
