"""Answers for analysts about a user: the devices they owned and when, their energy
balance, and the `user_energy_summary` view. Totals come from the rollups
(storage/energy.py), never raw readings, over local days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import energy, local_span
from storage.errors import QueryError
from storage.owners import Ownership, ownerships
from storage.zones import EVERYONE

SUMMARY_VIEW = "user_energy_summary"


async def owned(
    conn: AsyncConnection, user_id: str, start: datetime, end: datetime
) -> list[Ownership]:
    """The spans of [start, end) in which `user_id` owned each device; QueryError if none."""
    spans = await ownerships(conn, user_id, start, end)
    if not spans:
        raise QueryError(
            f"no device belonged to user {user_id!r} then: `meterflow devices list` shows "
            "the owners"
        )
    return spans


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: str
    first_day: date
    consumption_kwh: float
    production_kwh: float
    devices: int

    @property
    def net_kwh(self) -> float:
        """Consumption minus production: positive drew from the grid, negative fed it."""
        return self.consumption_kwh - self.production_kwh


async def balance(
    conn: AsyncConnection, user_id: str, first_day: date, last_day: date, zone: tzinfo
) -> Balance:
    """A user's consumption, production and net over the devices they owned, while they
    owned them, over local days."""
    start, end = local_span(first_day, last_day, zone)
    spans = await owned(conn, user_id, start, end)
    months = await energy(conn, owned=spans, every="month", zone=zone, start=start, end=end)
    return Balance(
        user_id,
        first_day,
        sum(m.consumption_kwh for m in months),
        sum(m.production_kwh for m in months),
        len({span.device_id for span in spans}),
    )


def summary_view_ddl(local_date: Callable[[str, str], str]) -> str:
    """`user_energy_summary`: per user and local day, consumption, production and net kWh
    of the devices each user owned, while they owned them (storage/owners.py), from the
    15-minute rollup, in each user's zone as last recorded (storage/zones.py; none
    recorded: UTC). `local_date(time, offset_s)` is the database's expression of the date
    of a UTC time moved by an offset in seconds (`Schema.local_date`)."""
    zone = f"coalesce(u.zone, (SELECT e.zone FROM user_zones e WHERE e.user_id = '{EVERYONE}'))"
    offset = (
        f"coalesce((SELECT z.offset_s FROM zone_offsets z WHERE z.zone = {zone} "
        "AND z.since <= q.quarter_hour ORDER BY z.since DESC LIMIT 1), 0)"
    )
    owned = (
        f"SELECT o.user_id, q.quarter_hour, q.data_type, q.energy_kwh, {offset} AS offset_s "
        "FROM energy_15min q JOIN device_owners o "
        "ON o.device_id = q.device_id AND o.since <= q.quarter_hour "
        "LEFT JOIN user_zones u ON u.user_id = o.user_id "
        "WHERE o.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM device_owners n "
        "WHERE n.device_id = o.device_id AND n.since > o.since AND n.since <= q.quarter_hour)"
    )
    day = local_date("s.quarter_hour", "s.offset_s")
    consumption = "sum(CASE WHEN s.data_type = 'consumption' THEN s.energy_kwh ELSE 0 END)"
    production = "sum(CASE WHEN s.data_type = 'production' THEN s.energy_kwh ELSE 0 END)"
    return (
        f"CREATE VIEW {SUMMARY_VIEW} AS SELECT s.user_id, {day} AS day, "
        f"{consumption} AS consumption_kwh, {production} AS production_kwh, "
        f"{consumption} - {production} AS net_kwh "
        f"FROM ({owned}) AS s GROUP BY s.user_id, {day}"
    )
