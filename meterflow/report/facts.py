"""What a monthly report says about a home, read from the database in one transaction:
its flows (storage/household.py), their totals and ratios, the bill by tariff period
(storage/bill.py), the peak, each local day, and each quarter hour for the heat map."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.analytics import owned
from storage.bill import Charge, HomeBucket, PricedQuarter, charges, home_buckets, priced_home
from storage.energy import local_span
from storage.peaks import MonthlyPeak, peaks
from storage.self_consumption import SelfConsumption, totals


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
    days: list[HomeBucket]
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
    spans = await owned(conn, user_id, start, end)
    home = await priced_home(conn, user_id, owned=spans, zone=zone, start=start, end=end)
    found = peaks((q.quarter.start, q.quarter.imported_kwh) for q in home.quarters)
    return MonthFacts(
        user_id,
        month,
        zone,
        totals(home.flows),
        charges(home.quarters),
        currencies,
        found[0] if found else None,
        home_buckets(home.quarters, "day"),
        home.quarters,
    )
