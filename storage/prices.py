"""Cost and carbon in the database: the configured rates written as a timeline, and the
rollups priced by it.

`rates` holds what storage/tariffs.py makes of the settings; the daemon writes it at
start, and so do `meterflow costs recompute` and `meterflow prices import` (other
commands leave it alone: one run without the config file must not unprice the daemon's
next batches). Each batch prices the quarter hours it adds to (the
`priced` CTE of storage/rollups.py: the quarter hour's energy at its owner's rate then),
and the coarser rollups add those up. A tariff changed for the past reprices nothing by
itself: `recompute` (`meterflow costs recompute`) prices a span of stored quarter hours
again and the hours, days and months around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME
from storage.backend import Schema
from storage.rollups import (
    DAILY,
    HOURLY,
    MONTHLY,
    QUARTER_HOURLY,
    Rollup,
    in_window,
    priced_sql,
    reading_prices,
)
from storage.series import stored_series
from storage.tables import rates
from storage.tariffs import CarbonSettings, Rate, Tariff, check_tariffs, timeline
from storage.types import UTCDateTime


@dataclass(frozen=True, slots=True)
class Prices:
    """The tariffs and carbon zones of the settings."""

    tariffs: list[Tariff] = field(default_factory=list)
    carbon: CarbonSettings = field(default_factory=CarbonSettings)

    def __post_init__(self) -> None:
        check_tariffs(self.tariffs)

    @property
    def configured(self) -> bool:
        """Whether anything prices energy: batches then look rates up, else they need not."""
        return bool(self.tariffs) or self.carbon.zone is not None or bool(self.carbon.user_zones)


_COLUMNS = ("subject", "since", "tariff", "period", "import_price", "export_price",
            "carbon_g_per_kwh")  # fmt: skip


def _row(rate: Rate) -> tuple[object, ...]:
    return tuple(getattr(rate, name) for name in _COLUMNS)


async def record_rates(
    conn: AsyncConnection, prices: Prices, today: date | None = None
) -> datetime | None:
    """Write the settings' rates where the database holds others, in one transaction;
    the first instant whose rate changed (None: nothing did)."""
    async with conn.begin():
        made = timeline(prices.tariffs, prices.carbon, today or datetime.now(UTC).date(),
                        await stored_series(conn, "price"),
                        await stored_series(conn, "carbon"))  # fmt: skip
        wanted = {_row(rate) for rate in made}
        stored = set((await conn.execute(select(*(rates.c[c] for c in _COLUMNS)))).tuples())
        if stored == wanted:
            return None
        await conn.execute(delete(rates))
        if wanted:
            await conn.execute(
                insert(rates),
                [
                    dict(zip(_COLUMNS, row, strict=True))
                    for row in sorted(wanted, key=lambda row: (row[0], row[1]))
                ],
            )
    changes: list[datetime] = [row[1] for row in stored ^ wanted]  # type: ignore[misc]
    return min(changes)


@dataclass(frozen=True, slots=True)
class Repriced:
    quarter_hours: int
    readings: int
    start: datetime
    end: datetime


async def recompute(
    conn: AsyncConnection, schema: Schema, start: datetime, end: datetime
) -> Repriced:
    """`price` in a transaction of its own."""
    async with conn.begin():
        return await price(conn, schema, start, end)


async def price(conn: AsyncConnection, schema: Schema, start: datetime, end: datetime) -> Repriced:
    """Price the quarter hours in [start, end) at the rates stored now, then make each
    hour, day and month touching the span the sum of its quarter hours again, and price
    the readings with energy in the span, in the caller's transaction."""
    table = QUARTER_HOURLY.table
    quarters = (
        f"(SELECT device_id, data_type, quarter_hour, energy_kwh FROM {table} "
        "WHERE quarter_hour >= :start AND quarter_hour < :end)"
    )
    priced = f"""UPDATE {table} SET cost = p.cost, carbon = p.carbon FROM (
    {priced_sql(quarters, "device_id, data_type, quarter_hour")}
) AS p
WHERE {table}.device_id = p.device_id AND {table}.data_type = p.data_type
  AND {table}.quarter_hour = p.quarter_hour"""
    first, last = _months_around(start, end)
    done = await conn.execute(in_window(priced, start, end))
    for rollup in (HOURLY, DAILY, MONTHLY):
        coarse = f"""UPDATE {rollup.table} SET cost = s.cost, carbon = s.carbon
FROM ({_quarter_sums(schema, rollup)}) AS s
WHERE {rollup.table}.device_id = s.device_id AND {rollup.table}.data_type = s.data_type
  AND {rollup.table}.{rollup.bucket} = s.bucket"""
        await conn.execute(in_window(coarse, first, last))
    readings = 0
    for table, pieces in await schema.readings_in_window(conn, start):
        # The pieces' WITH inside: a statement that starts with WITH has no rowcount.
        repriced = f"""UPDATE {table} SET cost = c.cost, carbon_footprint = c.carbon
FROM ({pieces}
{reading_prices("pieces")}) AS c
WHERE {table}.id = c.id AND {table}.recorded_at >= :start"""
        readings += (await conn.execute(in_window(repriced, start, end))).rowcount
    return Repriced(done.rowcount, readings, start, end)


def _quarter_sums(schema: Schema, rollup: Rollup) -> str:
    """Each of `rollup`'s buckets' cost and carbon as its quarter hours' in [:start, :end)."""
    bucket = schema.rollup_bucket(rollup, "quarter_hour")
    return f"""SELECT device_id, data_type, {bucket} AS bucket, sum(cost) AS cost,
       sum(carbon) AS carbon
FROM {QUARTER_HOURLY.table} WHERE quarter_hour >= :start AND quarter_hour < :end
GROUP BY 1, 2, 3"""


def _months_around(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The UTC months holding [start, end): every coarser bucket touching it lies within."""
    first = start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    if last.year == MAXYEAR:
        return first, end
    following = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following


@dataclass(frozen=True, slots=True)
class PriceDifference:
    """A row whose cost or carbon is not what the rates (a reading, a quarter hour) or its
    quarter hours (an hour, a day, a month) give; `at` is its bucket or time."""

    table: str
    device_id: str
    data_type: str
    at: datetime
    stored: tuple[float | None, float | None]
    expected: tuple[float | None, float | None]

    def __str__(self) -> str:
        where = f"{self.table} {self.device_id} {self.data_type} {self.at.isoformat()}"
        source = (
            "the rates" if self.table in (QUARTER_HOURLY.table, BASE_NAME) else "its quarter hours"
        )
        return f"{where}: {_costs(self.stored)} stored, {source} give {_costs(self.expected)}"


def _costs(values: tuple[float | None, float | None]) -> str:
    cost, carbon = values
    return f"cost {cost}, carbon {carbon} kg"


def _differ(stored: str, expected: str) -> str:
    return (
        f"(({stored}) IS NULL) <> (({expected}) IS NULL) "
        f"OR abs(({stored}) - ({expected})) > 1e-9 * (abs({expected}) + 1)"
    )


async def price_differences(
    conn: AsyncConnection, schema: Schema, start: datetime, end: datetime
) -> list[PriceDifference]:
    """The rollup rows in [start, end) (whole UTC months) and the readings with energy in
    it whose cost or carbon differs from what `recompute` would make them: the readings'
    and quarter hours' from the rates stored now, the others' from their quarter hours."""
    table = QUARTER_HOURLY.table
    stored = (
        f"(SELECT device_id, data_type, quarter_hour, energy_kwh, cost AS stored_cost, "
        f"carbon AS stored_carbon FROM {table} "
        "WHERE quarter_hour >= :start AND quarter_hour < :end)"
    )
    columns = "device_id, data_type, quarter_hour, stored_cost, stored_carbon"
    quarters = f"""SELECT {columns}, p.cost, p.carbon FROM ({priced_sql(stored, columns)}) AS p
WHERE {_differ("p.stored_cost", "p.cost")} OR {_differ("p.stored_carbon", "p.carbon")}
ORDER BY 1, 2, 3"""
    found = await _differences(conn, table, QUARTER_HOURLY.bucket, quarters, (start, end))
    for rollup in (HOURLY, DAILY, MONTHLY):
        key = rollup.bucket
        coarse = f"""SELECT c.device_id, c.data_type, c.{key}, c.cost, c.carbon, s.cost, s.carbon
FROM {rollup.table} AS c JOIN ({_quarter_sums(schema, rollup)}) AS s
    ON c.device_id = s.device_id AND c.data_type = s.data_type AND c.{key} = s.bucket
WHERE c.{key} >= :start AND c.{key} < :end
  AND ({_differ("c.cost", "s.cost")} OR {_differ("c.carbon", "s.carbon")})
ORDER BY 1, 2, 3"""
        found += await _differences(conn, rollup.table, rollup.bucket, coarse, (start, end))
    for table, pieces in await schema.readings_in_window(conn, start):
        readings = f"""{pieces}
SELECT t.device_id, t.data_type, t.recorded_at, t.cost, t.carbon_footprint, c.cost, c.carbon
FROM {table} AS t JOIN ({reading_prices("pieces")}) AS c ON t.id = c.id
WHERE t.recorded_at >= :start
  AND ({_differ("t.cost", "c.cost")} OR {_differ("t.carbon_footprint", "c.carbon")})
ORDER BY 1, 2, 3"""
        found += await _differences(conn, BASE_NAME, "recorded_at", readings, (start, end))
    return found


async def _differences(
    conn: AsyncConnection, table: str, at: str, sql: str, window: tuple[datetime, datetime]
) -> list[PriceDifference]:
    """The rows of `sql` (key, time `at`, stored cost and carbon, expected cost and
    carbon) in `table`, over `window`."""
    statement = in_window(sql, *window).columns(**{at: UTCDateTime()})
    return [
        PriceDifference(table, device, kind, moment, (c, k), (ec, ek))
        for device, kind, moment, c, k, ec, ek in await conn.execute(statement)
    ]
