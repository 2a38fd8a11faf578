"""Energy per bucket in a time zone: quarter hours, hours, days and months as the person
reading them lives them, summed from the rollups.

A local bucket is a union of UTC rollup buckets. A local quarter hour is a UTC one in
every zone (offsets are whole quarter hours). A local hour, day or month is made of UTC
hours where the zone's offset is a whole number of hours throughout the span (Berlin, New
York, DST days included), of UTC quarter hours otherwise (India's +5:30, Nepal's +5:45),
and of UTC days or months only in UTC itself. So every local day is exact, the 23- and
25-hour days of a DST change included, and a bucket is named by its first instant, with
its offset: the two 02:00 hours of a night when clocks go back are two buckets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from sqlalchemy import Table, and_, case, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import Month
from storage.owners import Ownership
from storage.rollups import DAILY, HOURLY, MONTHLY, QUARTER_HOURLY, Rollup
from storage.tables import metadata

Every = Literal["15min", "hour", "day", "month"]
EVERY: tuple[Every, ...] = ("15min", "hour", "day", "month")
_QUARTER = timedelta(minutes=15)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class EnergyBucket:
    """One local bucket's totals; `start` is its first instant, in the zone."""

    start: datetime
    consumption_kwh: float
    production_kwh: float
    peak_power_kw: float | None
    readings: int
    power_sum: float = 0.0
    power_count: int = 0

    @property
    def energy_kwh(self) -> float:
        """Consumption and production together: what a device with one of them measured."""
        return self.consumption_kwh + self.production_kwh

    @property
    def average_power_kw(self) -> float | None:
        return self.power_sum / self.power_count if self.power_count else None


def first_instant(day: date, zone: tzinfo) -> datetime:
    """The first instant of a local day, in UTC. Where midnight does not exist (clocks
    jumping from 00:00 to 01:00) that is 01:00; where it happens twice, the first."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def local_span(first: date, last: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """From the first instant of local day `first` to the end of local day `last`, in UTC."""
    return first_instant(first, zone), first_instant(last + timedelta(days=1), zone)


def source(
    every: Every, zone: tzinfo, start: datetime, end: datetime, bounds: Sequence[datetime] = ()
) -> Rollup:
    """The coarsest rollup whose buckets each fall in one local bucket over [start, end),
    and none across one of `bounds` (where a device changed hands: quarter hours)."""
    if every == "15min" or any(bound.minute or bound.second for bound in bounds):
        return QUARTER_HOURLY
    # Offsets change only at transitions, which fall on whole hours of UTC time: one
    # look per hour sees every offset in force.
    offsets = {
        offset
        for moment in _steps(start, end, _HOUR)
        if (offset := moment.astimezone(zone).utcoffset()) is not None
    }
    midnights = all(bound.hour == 0 and (every == "day" or bound.day == 1) for bound in bounds)
    if offsets <= {timedelta(0)} and (every == "hour" or midnights):
        return {"hour": HOURLY, "day": DAILY, "month": MONTHLY}[every]
    if all(offset % _HOUR == timedelta(0) for offset in offsets):
        return HOURLY
    return QUARTER_HOURLY


async def energy(
    conn: AsyncConnection,
    *,
    owned: Sequence[Ownership] | None,
    every: Every,
    zone: tzinfo,
    start: datetime,
    end: datetime,
) -> list[EnergyBucket]:
    """Every local bucket starting in [start, end) (UTC instants on local bucket bounds,
    as `local_span` gives), with the totals of the devices over the spans in `owned`
    (`storage.owners`; None: every device, all the time)."""
    bounds = [
        moment
        for span in owned or ()
        for moment in (span.since, span.until)
        if start < moment < end
    ]
    rollup = source(every, zone, start, end, bounds)
    table: Table = metadata.tables[rollup.table]
    bucket = table.c[rollup.bucket]
    statement = (
        select(
            bucket,
            func.sum(case((table.c.data_type == "consumption", table.c.energy_kwh), else_=0.0)),
            func.sum(case((table.c.data_type == "production", table.c.energy_kwh), else_=0.0)),
            func.max(table.c.power_max),
            func.sum(table.c.readings),
            func.sum(table.c.power_sum),
            func.sum(table.c.power_count),
        )
        .where(bucket >= start, bucket < end)
        .group_by(bucket)
        .order_by(bucket)
    )
    if owned is not None:
        statement = statement.where(
            or_(
                false(),
                *(
                    and_(table.c.device_id == span.device_id, bucket >= span.since,
                         bucket < span.until)
                    for span in owned
                ),
            )
        )  # fmt: skip
    totals: dict[datetime, EnergyBucket] = {}
    for at, consumption, production, peak, readings, power_sum, power_count in await conn.execute(
        statement
    ):
        key = bucket_start(at, zone, every)
        row = EnergyBucket(
            key, consumption or 0.0, production or 0.0, peak, int(readings or 0),
            power_sum or 0.0, int(power_count or 0),
        )  # fmt: skip
        totals[key] = _add(totals[key], row) if key in totals else row
    return [
        replace(totals.get(key) or EnergyBucket(key, 0.0, 0.0, None, 0), start=key.astimezone(zone))
        for key in _buckets(rollup, every, zone, start, end)
    ]


def _add(a: EnergyBucket, b: EnergyBucket) -> EnergyBucket:
    peaks = [p for p in (a.peak_power_kw, b.peak_power_kw) if p is not None]
    return EnergyBucket(
        a.start,
        a.consumption_kwh + b.consumption_kwh,
        a.production_kwh + b.production_kwh,
        max(peaks) if peaks else None,
        a.readings + b.readings,
        a.power_sum + b.power_sum,
        a.power_count + b.power_count,
    )


def bucket_start(moment: datetime, zone: tzinfo, every: Every) -> datetime:
    """The first instant of the local bucket holding `moment`, in UTC.

    In UTC, because two local times of the same zone compare by their wall clock alone:
    the two 02:00s of a night when clocks go back would be one key.
    """
    local = moment.astimezone(zone)
    if every == "15min":
        start = local.replace(minute=local.minute // 15 * 15, second=0, microsecond=0)
    elif every == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        return first_instant(local.date() if every == "day" else local.date().replace(day=1), zone)
    return start.astimezone(UTC)


def _buckets(
    rollup: Rollup, every: Every, zone: tzinfo, start: datetime, end: datetime
) -> list[datetime]:
    """Each local bucket in [start, end), in order, once."""
    seen: dict[datetime, None] = {}
    for moment in _rollup_buckets(rollup, start, end):
        seen.setdefault(bucket_start(moment, zone, every), None)
    return list(seen)


def _rollup_buckets(rollup: Rollup, start: datetime, end: datetime) -> Iterator[datetime]:
    if rollup is MONTHLY:
        month = Month.of(start)
        while month.start < end:
            yield month.start
            month = month.next()
        return
    step = {QUARTER_HOURLY.table: _QUARTER, HOURLY.table: _HOUR}.get(rollup.table)
    yield from _steps(start, end, step or timedelta(days=1))


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    moment = start
    while moment < end:
        yield moment
        moment += step
