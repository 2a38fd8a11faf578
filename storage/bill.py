"""A home's bill: what it drew from the grid and fed in (storage/household.py), each
quarter hour at its user's rate then (storage/prices.py), by tariff and period, and the
home's quarter hours added up into local hours, days and months with what they cost.

Only the grid's energy is billed: a submeter's consumption is part of what the grid
meter measured, and a panel's production earns a credit only for what was fed in. A
quarter hour costs I x import price - E x feed-in price, and its carbon is I x the grid's
intensity; a rollup's own cost and carbon price each device's energy alone, so for a
home with a grid meter and nothing else the two agree.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import Every
from storage.household import Flows, HomeFlows, HomeQuarter, home_flows
from storage.owners import Ownership
from storage.peaks import QUARTERS_PER_HOUR
from storage.tables import rates
from storage.tariffs import EVERYONE, Rate


@dataclass(frozen=True, slots=True)
class PricedQuarter:
    quarter: HomeQuarter
    rate: Rate | None

    @property
    def cost(self) -> float | None:
        """What the quarter hour cost, feed-in credited; None where energy had no price."""
        rate, quarter = self.rate, self.quarter
        import_price = rate.import_price if rate else None
        export_price = rate.export_price if rate else None
        if (quarter.imported_kwh and import_price is None) or (
            quarter.exported_kwh and export_price is None
        ):
            return None
        return quarter.imported_kwh * (import_price or 0.0) - quarter.exported_kwh * (
            export_price or 0.0
        )

    @property
    def carbon_kg(self) -> float | None:
        if self.rate is None or self.rate.carbon_g_per_kwh is None:
            return None
        return self.quarter.imported_kwh * self.rate.carbon_g_per_kwh / 1000.0


@dataclass(frozen=True, slots=True)
class Charge:
    """A bill's line: the energy of one tariff's period (None: outside every period, or
    no tariff at all), what it cost and its carbon."""

    tariff: str | None
    period: str | None
    imported_kwh: float
    exported_kwh: float
    cost: float
    carbon_kg: float
    # Energy no price applied to (a dynamic tariff without an imported price then).
    unpriced_kwh: float


async def user_rates(
    conn: AsyncConnection, user_id: str, start: datetime, end: datetime
) -> list[Rate]:
    """The rates of `user_id` in force in [start, end): their own if they have any, else
    everyone's, as storage.rollups.priced_sql looks them up."""
    own = f"user:{user_id}"
    has_own = (await conn.execute(select(exists().where(rates.c.subject == own)))).scalar()
    subject = own if has_own else EVERYONE
    first = (
        select(rates.c.since)
        .where(rates.c.subject == subject, rates.c.since <= start)
        .order_by(rates.c.since.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(rates)
        .where(
            rates.c.subject == subject,
            rates.c.since < end,
            or_(rates.c.since >= first, first.is_(None)),
        )
        .order_by(rates.c.since)
    )
    return [Rate(**row) for row in rows.mappings()]


def priced(quarters: Sequence[HomeQuarter], timeline: Sequence[Rate]) -> list[PricedQuarter]:
    """Each quarter hour with the rate in force at its start."""
    starts = [rate.since for rate in timeline]
    return [
        PricedQuarter(q, timeline[i - 1] if (i := bisect.bisect_right(starts, q.start)) else None)
        for q in quarters
    ]


def charges(quarters: Sequence[PricedQuarter]) -> list[Charge]:
    """The bill's lines, in the order their periods first occur."""
    lines: dict[tuple[str | None, str | None], list[PricedQuarter]] = {}
    for q in quarters:
        key = (q.rate.tariff, q.rate.period) if q.rate else (None, None)
        lines.setdefault(key, []).append(q)
    return [
        Charge(
            tariff,
            period,
            sum(q.quarter.imported_kwh for q in part),
            sum(q.quarter.exported_kwh for q in part),
            sum(cost for q in part if (cost := q.cost) is not None),
            sum(carbon for q in part if (carbon := q.carbon_kg) is not None),
            sum(q.quarter.imported_kwh + q.quarter.exported_kwh for q in part if q.cost is None),
        )
        for (tariff, period), part in lines.items()
    ]


@dataclass(frozen=True, slots=True)
class PricedHome:
    flows: HomeFlows
    quarters: list[PricedQuarter]


async def priced_home(
    conn: AsyncConnection,
    user_id: str,
    *,
    owned: Sequence[Ownership],
    zone: tzinfo,
    start: datetime,
    end: datetime,
) -> PricedHome:
    """The quarter hours in [start, end) of `user_id`'s home, the devices in `owned`, each
    at the user's rate then."""
    flows = await home_flows(conn, owned, zone, start, end)
    return PricedHome(flows, priced(flows.quarters, await user_rates(conn, user_id, start, end)))


@dataclass(frozen=True, slots=True)
class HomeBucket(Flows):
    """A home's local bucket: its flows, cost and carbon (None where nothing priced them),
    and its peak demand, the highest quarter hour's average power drawn (None: none)."""

    start: datetime
    cost: float | None
    carbon_kg: float | None
    peak_demand_kw: float | None


def _bucket_of(start: datetime, every: Every) -> Hashable:
    """What names the local bucket of a quarter hour starting at `start` (in the zone)."""
    if every == "day":
        return start.date()
    if every == "month":
        return start.year, start.month
    if every == "hour":
        # The instant the local hour began: the two 02:00 hours of a night when clocks go
        # back are two buckets, and in a +5:30 zone an hour starts at half past in UTC.
        return start.astimezone(UTC) - timedelta(minutes=start.minute)
    return start.astimezone(UTC)


def home_buckets(quarters: Sequence[PricedQuarter], every: Every) -> list[HomeBucket]:
    """The quarter hours added up per local bucket of `every`, in order; a bucket starts at
    its first quarter hour."""
    parts: dict[Hashable, list[PricedQuarter]] = {}
    for q in quarters:
        parts.setdefault(_bucket_of(q.quarter.start, every), []).append(q)
    return [_bucket(part) for part in parts.values()]


def _bucket(part: Sequence[PricedQuarter]) -> HomeBucket:
    drawn = max(q.quarter.imported_kwh for q in part)
    return HomeBucket(
        sum(q.quarter.imported_kwh for q in part),
        sum(q.quarter.exported_kwh for q in part),
        sum(q.quarter.produced_kwh for q in part),
        sum(q.quarter.charged_kwh for q in part),
        sum(q.quarter.discharged_kwh for q in part),
        part[0].quarter.start,
        _known_sum([q.cost for q in part]),
        _known_sum([q.carbon_kg for q in part]),
        drawn * QUARTERS_PER_HOUR if drawn > 0 else None,
    )


def _known_sum(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None
