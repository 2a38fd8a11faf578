"""What a monthly report says about a home, read from the database in one transaction:
its flows (storage/household.py), their totals and ratios, the bill by tariff period
(storage/bill.py), the peak, each local day, and each quarter hour for the heat map."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.analytics import owned
from storage.bill import Charge, PricedQuarter, charges, priced, user_rates
from storage.energy import local_span
from storage.household import home_flows
from storage.peaks import MonthlyPeak, peaks
from storage.self_consumption import SelfConsumption, totals


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    used_kwh: float
    produced_kwh: float
    imported_kwh: float
    exported_kwh: float
    cost: float | None
    carbon_kg: float | None


@dataclass(frozen=True, slots=True)
class MonthFacts:
    user_id: str
    month: date
    zone: ZoneInfo
    totals: SelfConsumption
    charges: list[Charge]
    # Each tariff's currency, by the tariff's name.
    currencies: Mapping[str, str]
    peak: MonthlyPeak | None
    days: list[Day]
    quarters: list[PricedQuarter]

    @property
    def net_kwh(self) -> float:
        """Drawn from the grid less fed in."""
        return self.totals.imported_kwh - self.totals.exported_kwh

    @property
    def costs(self) -> dict[str, float]:
        """The month's cost per currency."""
        found: dict[str, float] = {}
        for charge in self.charges:
            if charge.tariff is not None:
                currency = self.currencies.get(charge.tariff, "")
                found[currency] = found.get(currency, 0.0) + charge.cost
        return found

    @property
    def carbon_kg(self) -> float:
        return sum(charge.carbon_kg for charge in self.charges)

    @property
    def unpriced_kwh(self) -> float:
        """Energy drawn or fed in that no price applied to."""
        return sum(
            charge.unpriced_kwh
            if charge.tariff is not None
            else charge.imported_kwh + charge.exported_kwh
            for charge in self.charges
        )


def month_span(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local month's first instant and the next month's, in UTC."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return local_span(month, following - timedelta(days=1), zone)


async def month_facts(
    conn: AsyncConnection,
    user_id: str,
    month: date,
    zone: ZoneInfo,
    currencies: Mapping[str, str],
) -> MonthFacts:
    """The facts of `user_id`'s home in the local `month`; QueryError if they owned no
    device then."""
    start, end = month_span(month, zone)
    flows = await home_flows(conn, await owned(conn, user_id, start, end), zone, start, end)
    quarters = priced(flows.quarters, await user_rates(conn, user_id, start, end))
    found = peaks((q.start, q.imported_kwh) for q in flows.quarters)
    return MonthFacts(
        user_id,
        month,
        zone,
        totals(flows),
        charges(quarters),
        currencies,
        found[0] if found else None,
        _days(quarters),
        quarters,
    )


def _days(quarters: Sequence[PricedQuarter]) -> list[Day]:
    by_day: dict[date, list[PricedQuarter]] = {}
    for q in quarters:
        by_day.setdefault(q.quarter.start.date(), []).append(q)
    return [
        Day(
            day,
            sum(q.quarter.used_kwh for q in part),
            sum(q.quarter.produced_kwh for q in part),
            sum(q.quarter.imported_kwh for q in part),
            sum(q.quarter.exported_kwh for q in part),
            _total(q.cost for q in part),
            _total(q.carbon_kg for q in part),
        )
        for day, part in by_day.items()
    ]


def _total(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None
