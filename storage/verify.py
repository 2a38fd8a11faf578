"""Rollups checked against the raw readings they sum, and rebuilt from them.

The invariant: for every month whose readings are in the database, each rollup row
(`energy_15min`, `energy_hourly`, `energy_daily`, `energy_monthly`) holds exactly the
totals of that device's readings in its bucket, their energy spread over the intervals it
covers (storage/rollups.py), and no rollup row exists without readings. Buckets are UTC
quarter hours, hours, days and months, so no bucket crosses a month: a month is checked,
or rebuilt, on its own, from its readings and the later readings whose energy reaches
back into it. Rollup rows of months that retention archived or dropped stay as they were,
the only record of those months' totals the database keeps; an archived month is checked
against its archive file by the backend that can read it (`archived_differences`).

Each check is one statement per rollup, so it sees one consistent state even while the
daemon writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME, Month
from storage.backend import Dialect
from storage.prices import PriceDifference, price
from storage.rollups import (
    MEASURES,
    PIECE_COLUMNS,
    ROLLUPS,
    Rollup,
    backfill_sql,
    in_window,
    totals_sql,
)
from storage.tables import energy_monthly
from storage.types import UTCDateTime

# Sums of the same floats in another order differ in their last bits.
_TOLERANCE = "1e-9 * (abs({a}) + 1)"
TOTALS = tuple(MEASURES.split(", "))


@dataclass(frozen=True, slots=True)
class Totals:
    """One rollup row's values."""

    energy_kwh: float
    power_max: float | None
    power_sum: float
    power_count: int
    readings: int


@dataclass(slots=True)
class Verification:
    """What `db verify` found: each month it could check with its differences (and the
    archive file it read, for a month that is not live), and the months whose rollup rows
    have no readings it can read."""

    months: list[tuple[Month, list[Difference]]] = field(default_factory=list)
    archives: dict[Month, Path] = field(default_factory=dict)
    without_readings: list[Month] = field(default_factory=list)
    # Each month with rollup rows, and the rows whose cost or carbon is off.
    prices: list[tuple[Month, list[PriceDifference]]] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return sum(len(found) for _, found in self.months)

    @property
    def price_differences(self) -> int:
        return sum(len(found) for _, found in self.prices)


@dataclass(frozen=True, slots=True)
class Difference:
    """A rollup row that is not what its readings add up to (None: no such row)."""

    rollup: str
    device_id: str
    data_type: str
    bucket: datetime
    stored: Totals | None
    recomputed: Totals | None

    def __str__(self) -> str:
        where = f"{self.rollup} {self.device_id} {self.data_type} {self.bucket.isoformat()}"
        return f"{where}: stored {_show(self.stored)}, readings give {_show(self.recomputed)}"


def _show(totals: Totals | None) -> str:
    if totals is None:
        return "nothing"
    return (
        f"{totals.energy_kwh:.6f} kWh, peak {totals.power_max} kW, "
        f"{totals.readings} readings ({totals.power_count} with power)"
    )


_WINDOW = "recorded_at >= :start AND recorded_at < :end"


def month_source(readings: str, later: str = BASE_NAME) -> str:
    """The readings whose energy may fall in [:start, :end): those of `readings`, a month's
    table (only its rows in the window count), and those of `later`, every table, recorded
    after it with an interval that reaches back into it."""
    return (
        f"(SELECT {PIECE_COLUMNS} FROM {readings} WHERE {_WINDOW} UNION ALL "
        f"SELECT {PIECE_COLUMNS} FROM {later} WHERE recorded_at >= :end "
        "AND interval_start < :end) AS month_readings"
    )


def compare_sql(rollup: Rollup, delta: str, bucket: str) -> str:
    """The rows of `rollup` in [:start, :end) that differ from their readings' totals;
    `delta` is the WITH clause of the readings' delta (`Schema.rollup_delta`), `bucket` the
    rollup's bucket of `quarter_hour` (`Schema.rollup_bucket`)."""
    pairs = ", ".join(f"r.{name}, s.{name}" for name in TOTALS)
    differs = " OR ".join(
        [
            "r.device_id IS NULL",
            "s.device_id IS NULL",
            "r.readings <> s.readings",
            "r.power_count <> s.power_count",
            # Power is never negative: -1 stands for "no power in the bucket".
            "coalesce(r.power_max, -1) <> coalesce(s.power_max, -1)",
            f"abs(r.energy_kwh - s.energy_kwh) > {_TOLERANCE.format(a='r.energy_kwh')}",
            f"abs(r.power_sum - s.power_sum) > {_TOLERANCE.format(a='r.power_sum')}",
        ]
    )
    key = rollup.bucket
    return f"""{delta}, recomputed (device_id, data_type, bucket, {MEASURES}) AS (
    {totals_sql(rollup, bucket)}
), stored AS (
    SELECT device_id, data_type, {key} AS bucket, {MEASURES}
    FROM {rollup.table} WHERE {key} >= :start AND {key} < :end
)
SELECT coalesce(r.device_id, s.device_id) AS device_id,
       coalesce(r.data_type, s.data_type) AS data_type,
       coalesce(s.bucket, r.bucket) AS bucket, {pairs}
FROM recomputed AS r FULL OUTER JOIN stored AS s
    ON r.device_id = s.device_id AND r.data_type = s.data_type AND r.bucket = s.bucket
WHERE {differs}
ORDER BY 1, 2, 3
"""


def _in(month: Month, sql: str) -> TextClause:
    """`sql` with :start and :end bound to the month's first and next month's first instant."""
    return in_window(sql, month.start, month.end)


async def month_differences(
    conn: AsyncConnection, backend: Dialect, month: Month
) -> list[Difference]:
    """Every rollup row of `month` that differs from what its readings add up to."""
    delta = backend.rollup_delta(month_source(backend.readings_table(month).name))
    found: list[Difference] = []
    for rollup in ROLLUPS:
        sql = compare_sql(rollup, delta, backend.rollup_bucket(rollup, "quarter_hour"))
        rows = await conn.execute(_in(month, sql).columns(bucket=UTCDateTime()))
        found.extend(difference(rollup, tuple(row)) for row in rows)
    return found


def difference(rollup: Rollup, row: Sequence[Any]) -> Difference:
    """A row of `compare_sql`'s result as a Difference (its bucket already a datetime)."""
    device_id, data_type, bucket, *values = row
    return Difference(
        rollup.table,
        device_id,
        data_type,
        bucket,
        stored=_totals(values[1::2]),
        recomputed=_totals(values[0::2]),
    )


async def rebuild_month(conn: AsyncConnection, backend: Dialect, month: Month) -> None:
    """Replace `month`'s rollup rows by the totals of its readings, in the caller's
    transaction, with the daemon's rollup updates held back until it commits."""
    await backend.lock_rollups(conn)
    delta = backend.rollup_delta(month_source(backend.readings_table(month).name))
    for rollup in ROLLUPS:
        key = rollup.bucket
        await conn.execute(
            _in(month, f"DELETE FROM {rollup.table} WHERE {key} >= :start AND {key} < :end")
        )
        bucket = backend.rollup_bucket(rollup, "quarter_hour")
        await conn.execute(_in(month, backfill_sql(rollup, delta, bucket)))
    # The totals came back without their cost and carbon.
    await price(conn, backend, month.start, month.end)


def _totals(values: Sequence[Any]) -> Totals | None:
    """A rollup row's values from a result's columns; None where the row is missing."""
    energy, peak, power_sum, power_count, readings = values
    if readings is None:
        return None
    return Totals(
        float(energy),
        None if peak is None else float(peak),
        float(power_sum),
        int(power_count),
        int(readings),
    )


async def rollup_months(conn: AsyncConnection) -> set[Month]:
    """The months the monthly rollup holds totals for."""
    result = await conn.execute(select(energy_monthly.c.month).distinct())
    return {Month.of(moment) for (moment,) in result}
