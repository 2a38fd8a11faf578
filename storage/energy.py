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

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, and_, case, false, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import backend_for
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
    # What the energy cost (feed-in credited) and its kg CO2; None where nothing priced it.
    cost: float | None = None
    carbon_kg: float | None = None

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


Segment = tuple[datetime, datetime, timedelta]  # [start, end) in UTC, and the offset there
# Key lengths of 'YYYY-MM-DD HH:MM' naming each kind of local bucket.
_KEY_LENGTH: dict[Every, int] = {"15min": 16, "hour": 13, "day": 10, "month": 7}


def segments(zone: tzinfo, start: datetime, end: datetime) -> list[Segment]:
    """[start, end) cut where the zone's offset changes. A zone changes its offset at most
    once a day: a look a day finds each change, and quarter hours place it."""
    cuts = [start]
    day = timedelta(days=1)
    moment = start
    while moment < end:
        following = min(moment + day, end)
        if _offset(zone, moment) != _offset(zone, following - _QUARTER):
            cut = moment
            while _offset(zone, cut) == _offset(zone, moment):
                cut += _QUARTER
            cuts.append(cut)
        moment = following
    cuts.append(end)
    return [(a, b, _offset(zone, a)) for a, b in itertools.pairwise(cuts) if a < b]


def _offset(zone: tzinfo, moment: datetime) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def source(every: Every, parts: Sequence[Segment], bounds: Sequence[datetime] = ()) -> Rollup:
    """The coarsest rollup whose buckets each fall in one local bucket over the segments,
    and none across one of `bounds` (where a device changed hands: quarter hours)."""
    cuts = [*bounds, *(segment[0] for segment in parts[1:])]
    if every == "15min" or any(cut.minute or cut.second for cut in cuts):
        return QUARTER_HOURLY
    offsets = {offset for _, _, offset in parts}
    midnights = all(cut.hour == 0 and (every == "day" or cut.day == 1) for cut in cuts)
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
    (`storage.owners`; None: every device, all the time).

    The database groups the rollup's rows into local buckets, a statement per stretch of
    one UTC offset (a DST day is two), so what comes back is a row per local bucket.
    """
    parts = segments(zone, start, end)
    bounds = [
        moment
        for span in owned or ()
        for moment in (span.since, span.until)
        if start < moment < end
    ]
    rollup = source(every, parts, bounds)
    table: Table = metadata.tables[rollup.table]
    bucket = table.c[rollup.bucket]
    backend = backend_for(conn.dialect.name)
    totals: dict[datetime, EnergyBucket] = {}
    for first, last, offset in parts:
        minutes = int(offset.total_seconds() // 60)
        key: ColumnElement[str] = literal_column(
            backend.shifted_text(rollup.bucket, minutes, _KEY_LENGTH[every])
        )
        statement = (
            select(
                key,
                func.sum(case((table.c.data_type == "consumption", table.c.energy_kwh), else_=0.0)),
                func.sum(case((table.c.data_type == "production", table.c.energy_kwh), else_=0.0)),
                func.max(table.c.power_max),
                func.sum(table.c.readings),
                func.sum(table.c.power_sum),
                func.sum(table.c.power_count),
                func.sum(table.c.cost),
                func.sum(table.c.carbon),
            )
            .where(bucket >= first, bucket < last)
            .group_by(key)
        )
        if owned is not None:
            statement = statement.where(_within(table, bucket, owned))
        for (
            text,
            consumption,
            production,
            peak,
            readings,
            power_sum,
            power_count,
            cost,
            carbon,
        ) in await conn.execute(statement):
            at = _start_of(text, offset, every, zone)
            row = EnergyBucket(
                at, consumption or 0.0, production or 0.0, peak, int(readings or 0),
                power_sum or 0.0, int(power_count or 0), cost, carbon,
            )  # fmt: skip
            totals[at] = _add(totals[at], row) if at in totals else row
    return [
        replace(totals.get(at) or EnergyBucket(at, 0.0, 0.0, None, 0), start=at.astimezone(zone))
        for at in _buckets(every, zone, start, end, parts)
    ]


def _within(table: Table, bucket: ColumnElement[datetime], owned: Sequence[Ownership]) -> Any:  # noqa: ANN401
    return or_(
        false(),
        *(
            and_(table.c.device_id == span.device_id, bucket >= span.since, bucket < span.until)
            for span in owned
        ),
    )


def _start_of(key: str, offset: timedelta, every: Every, zone: tzinfo) -> datetime:
    """The first instant, in UTC, of the local bucket a key names."""
    if every == "day":
        return first_instant(date.fromisoformat(key), zone)
    if every == "month":
        return first_instant(date.fromisoformat(f"{key}-01"), zone)
    wall = datetime.fromisoformat(f"{key}:00" if every == "hour" else key)
    return wall.replace(tzinfo=timezone(offset)).astimezone(UTC)


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
        _sum(a.cost, b.cost),
        _sum(a.carbon_kg, b.carbon_kg),
    )


def _sum(a: float | None, b: float | None) -> float | None:
    """Two sums of SQL's kind: None where neither had anything to add."""
    if a is None:
        return b
    return a if b is None else a + b


def _buckets(
    every: Every, zone: tzinfo, start: datetime, end: datetime, parts: Sequence[Segment]
) -> Iterator[datetime]:
    """The first instant, in UTC, of each local bucket in [start, end), in order."""
    if every in ("day", "month"):
        day = start.astimezone(zone).date()
        while (at := first_instant(day, zone)) < end:
            yield at
            following = day + timedelta(days=1)
            day = (
                following
                if every == "day"
                else (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            )
        return
    for first, last, offset in parts:
        for moment in _steps(first, last, _QUARTER):
            if every == "15min" or (moment + offset).minute == 0:
                yield moment


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    moment = start
    while moment < end:
        yield moment
        moment += step
