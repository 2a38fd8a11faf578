"""Self-consumption: how much of what a home produced it used itself, and how much of what
it used it produced, from the roles of the devices a user owned then.

Over a period, adding up the home's quarter hours (storage/household.py: imported I,
exported E, produced P, charged C and discharged D), the home used H = I + P - E + D - C, and
- self-consumed energy S = P - E (production that was not fed in),
- self-consumption ratio S / P,
- self-sufficiency (H - I) / H = 1 - I / H (the share of use not drawn from the grid),
the formulas of the Home Assistant energy dashboard, where a battery's energy is the
home's in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.household import Flows, HomeFlows, home_flows
from storage.owners import Ownership


@dataclass(frozen=True, slots=True)
class SelfConsumption(Flows):
    """A home's flows over a period."""

    # Whether a grid meter measured import and export (else they were netted).
    metered: bool

    @property
    def self_consumed_kwh(self) -> float:
        return max(0.0, self.produced_kwh - self.exported_kwh)

    @property
    def self_consumption_ratio(self) -> float | None:
        return self.self_consumed_kwh / self.produced_kwh if self.produced_kwh > 0 else None

    @property
    def self_sufficiency_ratio(self) -> float | None:
        used = self.used_kwh
        return (used - self.imported_kwh) / used if used > 0 else None


async def self_consumption(
    conn: AsyncConnection,
    owned: Sequence[Ownership],
    zone: tzinfo,
    start: datetime,
    end: datetime,
) -> SelfConsumption:
    """The user's balance over [start, end) from the devices in `owned`, while owned."""
    return totals(await home_flows(conn, owned, zone, start, end))


def totals(flows: HomeFlows) -> SelfConsumption:
    """The home's quarter hours added up."""
    quarters = flows.quarters
    return SelfConsumption(
        sum(q.imported_kwh for q in quarters),
        sum(q.exported_kwh for q in quarters),
        sum(q.produced_kwh for q in quarters),
        sum(q.charged_kwh for q in quarters),
        sum(q.discharged_kwh for q in quarters),
        metered=flows.metered,
    )
