"""Peak demand, as capacity tariffs bill it: the highest 15-minute average power drawn in
each local month, and the mean of the monthly peaks.

A quarter hour's average power is the energy drawn in it divided by a quarter of an hour:
a device's consumption, or a home's import from the grid (storage/household.py, the
devices its user owned then), so a home's peak is its own, neither the largest of any one
device's nor its grid meter's and submeters' added up. Quarter hours come from the
15-minute rollup through storage/energy.py, in the zone the months are counted in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import energy
from storage.household import home_flows
from storage.owners import Ownership

QUARTERS_PER_HOUR = 4


@dataclass(frozen=True, slots=True)
class MonthlyPeak:
    """A local month's highest 15-minute average power, and the quarter hour it began."""

    month: date
    peak_kw: float
    at: datetime


async def monthly_peaks(
    conn: AsyncConnection,
    *,
    owned: Sequence[Ownership] | None,
    zone: tzinfo,
    start: datetime,
    end: datetime,
    home: bool = False,
) -> list[MonthlyPeak]:
    """Each local month in [start, end) (UTC instants on local month bounds) with energy
    drawn by the devices in `owned` (None: every device), or by the `home` they make up:
    its peak; months without any are left out. The first quarter hour of a peak wins a
    tie."""
    drawn: list[tuple[datetime, float]]
    if home:
        flows = await home_flows(conn, owned or (), zone, start, end)
        drawn = [(q.start, q.imported_kwh) for q in flows.quarters]
    else:
        quarters = await energy(conn, owned=owned, every="15min", zone=zone, start=start, end=end)
        drawn = [(q.start, q.consumption_kwh) for q in quarters]
    return peaks(drawn)


def peaks(drawn: Iterable[tuple[datetime, float]]) -> list[MonthlyPeak]:
    """Each month's peak, from each quarter hour's local start and the energy drawn in it;
    months without any energy drawn are left out."""
    found: dict[date, MonthlyPeak] = {}
    for moment, kwh in drawn:
        if kwh <= 0:
            continue
        month = moment.date().replace(day=1)
        power = kwh * QUARTERS_PER_HOUR
        best = found.get(month)
        if best is None or power > best.peak_kw:
            found[month] = MonthlyPeak(month, power, moment)
    return [found[month] for month in sorted(found)]


def mean_peak(peaks: Sequence[MonthlyPeak]) -> float | None:
    """The mean of the monthly peaks, as a capacity tariff averages the last twelve."""
    return sum(p.peak_kw for p in peaks) / len(peaks) if peaks else None
