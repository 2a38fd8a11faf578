"""Peak demand, as capacity tariffs bill it: the highest 15-minute average power drawn in
each local month, and the mean of the monthly peaks.

A quarter hour's average power is its consumption divided by a quarter of an hour. For a
user it is the sum over the devices they owned then (storage/owners.py), so the peak is
the user's, not the largest of any one device's. Quarter hours come from the 15-minute
rollup through storage/energy.py, in the zone the months are counted in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import energy
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
) -> list[MonthlyPeak]:
    """Each local month in [start, end) (UTC instants on local month bounds) with energy
    drawn: its peak; months without any are left out. The first quarter hour of a peak
    wins a tie."""
    quarters = await energy(conn, owned=owned, every="15min", zone=zone, start=start, end=end)
    peaks: dict[date, MonthlyPeak] = {}
    for quarter in quarters:
        if quarter.consumption_kwh <= 0:
            continue
        month = quarter.start.date().replace(day=1)
        power = quarter.consumption_kwh * QUARTERS_PER_HOUR
        best = peaks.get(month)
        if best is None or power > best.peak_kw:
            peaks[month] = MonthlyPeak(month, power, quarter.start)
    return [peaks[month] for month in sorted(peaks)]


def mean_peak(peaks: Sequence[MonthlyPeak]) -> float | None:
    """The mean of the monthly peaks, as a capacity tariff averages the last twelve."""
    return sum(p.peak_kw for p in peaks) / len(peaks) if peaks else None
