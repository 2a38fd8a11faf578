"""A home's bill: what it drew from the grid and fed in (storage/household.py), each
quarter hour at its user's rate then (storage/prices.py), or at a grid meter's own while
a tariff of its own holds (a heat pump's or a charger's separate meter), by tariff and
period; and the home's quarter hours added up into local hours, days and months with
what they cost.

Only the grid's energy is billed: a submeter's consumption is part of what the grid
meter measured, and a panel's production earns a credit only for what was fed in. A
quarter hour costs I x import price - E x feed-in price, and its carbon is I x the grid's
intensity (the user's rate's); a rollup's own cost and carbon price each device's energy
alone, so a grid meter's rollups hold the bill of what it measured.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import EnergyBucket, Every, energy
from storage.household import Flows, HomeFlows, HomeQuarter, home_flows, roles
from storage.owners import Ownership
from storage.peaks import QUARTERS_PER_HOUR
from storage.tables import rates
from storage.tariffs import EVERYONE, Rate


@dataclass(frozen=True, slots=True)
class Part:
    """Some of a quarter hour's energy drawn and fed in, and the rate it is billed at."""

    rate: Rate | None
    imported_kwh: float
    exported_kwh: float

    @property
    def cost(self) -> float | None:
        """What the part cost, feed-in credited; None where its energy had no price."""
        import_price = self.rate.import_price if self.rate else None
        export_price = self.rate.export_price if self.rate else None
        if (self.imported_kwh and import_price is None) or (
            self.exported_kwh and export_price is None
        ):
            return None
        return self.imported_kwh * (import_price or 0.0) - self.exported_kwh * (export_price or 0.0)


@dataclass(frozen=True, slots=True)
class PricedQuarter:
    quarter: HomeQuarter
    # The user's rate then: the grid's carbon, and the price of what no device's own
    # tariff prices.
    rate: Rate | None
    # The quarter hour's import and export by the rate billing them.
    parts: tuple[Part, ...]

    @property
    def cost(self) -> float | None:
        """What the quarter hour cost, feed-in credited; None where energy had no price."""
        costs = [part.cost for part in self.parts]
        return None if None in costs else sum(c for c in costs if c is not None)

    @property
    def carbon_kg(self) -> float | None:
        return self.carbon_of(self.quarter.imported_kwh)

    def carbon_of(self, imported_kwh: float) -> float | None:
        if self.rate is None or self.rate.carbon_g_per_kwh is None:
            return None
        return imported_kwh * self.rate.carbon_g_per_kwh / 1000.0


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


async def subject_rates(
    conn: AsyncConnection, subject: str, start: datetime, end: datetime
) -> list[Rate]:
    """The rates of `subject` in force in [start, end), in order."""
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


async def user_rates(
    conn: AsyncConnection, user_id: str, start: datetime, end: datetime
) -> list[Rate]:
    """The rates of `user_id` in force in [start, end): their own if they have any, else
    everyone's, as storage.rollups.priced_sql looks them up."""
    own = f"user:{user_id}"
    has_own = (await conn.execute(select(exists().where(rates.c.subject == own)))).scalar()
    return await subject_rates(conn, own if has_own else EVERYONE, start, end)


class Timeline:
    """A subject's rates, looked up by instant."""

    def __init__(self, rates: Sequence[Rate]) -> None:
        self._rates = rates
        self._starts = [rate.since for rate in rates]

    def at(self, moment: datetime) -> Rate | None:
        i = bisect.bisect_right(self._starts, moment)
        return self._rates[i - 1] if i else None


@dataclass(frozen=True, slots=True)
class OwnTariff:
    """A grid meter with tariffs of its own: its rates, and its quarter hours."""

    rates: Timeline
    quarters: Sequence[EnergyBucket]


def priced(
    quarters: Sequence[HomeQuarter],
    timeline: Sequence[Rate],
    meters: Sequence[OwnTariff] = (),
) -> list[PricedQuarter]:
    """Each quarter hour at the user's rate then, but for what a grid meter with a tariff
    of its own drew and fed in while that tariff held: that at the meter's rate."""
    user = Timeline(timeline)
    found = []
    for index, quarter in enumerate(quarters):
        rate = user.at(quarter.start)
        parts = []
        imported, exported = quarter.imported_kwh, quarter.exported_kwh
        for meter in meters:
            own, energy = meter.rates.at(quarter.start), meter.quarters[index]
            if own is not None and own.tariff is not None:
                parts.append(Part(own, energy.consumption_kwh, energy.production_kwh))
                imported -= energy.consumption_kwh
                exported -= energy.production_kwh
        parts.append(Part(rate, imported, exported))
        found.append(PricedQuarter(quarter, rate, tuple(parts)))
    return found


def charges(quarters: Sequence[PricedQuarter]) -> list[Charge]:
    """The bill's lines, in the order their periods first occur."""
    lines: dict[tuple[str | None, str | None], list[tuple[PricedQuarter, Part]]] = {}
    for q in quarters:
        for part in q.parts:
            key = (part.rate.tariff, part.rate.period) if part.rate else (None, None)
            lines.setdefault(key, []).append((q, part))
    return [
        Charge(
            tariff,
            period,
            sum(part.imported_kwh for _, part in line),
            sum(part.exported_kwh for _, part in line),
            sum(cost for _, part in line if (cost := part.cost) is not None),
            sum(c for q, part in line if (c := q.carbon_of(part.imported_kwh)) is not None),
            sum(p.imported_kwh + p.exported_kwh for _, p in line if p.cost is None),
        )
        for (tariff, period), line in lines.items()
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
    at the user's rate then, or a grid meter's own (`priced`)."""
    flows = await home_flows(conn, owned, zone, start, end)
    of = await roles(conn, [span.device_id for span in owned])
    meters = []
    for device in sorted({span.device_id for span in owned if of.get(span.device_id) == "grid"}):
        own = await subject_rates(conn, f"device:{device}", start, end)
        if own:
            spans = [span for span in owned if span.device_id == device]
            quarters = await energy(
                conn, owned=spans, every="15min", zone=zone, start=start, end=end
            )
            meters.append(OwnTariff(Timeline(own), quarters))
    timeline = await user_rates(conn, user_id, start, end)
    return PricedHome(flows, priced(flows.quarters, timeline, meters))


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
