"""Answers for analysts about a user: the devices they owned and when, their energy
balance, and the `user_energy_summary` view. Totals come from the rollups
(storage/energy.py), never raw readings, over local days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import local_span
from storage.errors import QueryError
from storage.household import home_flows
from storage.owners import Ownership, ownerships
from storage.records import ROLE_OF
from storage.self_consumption import totals
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
    # What the home used and produced (storage/household.py).
    consumption_kwh: float
    production_kwh: float
    # Drawn from the grid less fed in: positive drew from the grid, negative fed it.
    net_kwh: float
    devices: int


async def balance(
    conn: AsyncConnection, user_id: str, first_day: date, last_day: date, zone: tzinfo
) -> Balance:
    """A user's home over local days, made of the devices they owned while they owned
    them: what it used and produced, and its net exchange with the grid."""
    start, end = local_span(first_day, last_day, zone)
    spans = await owned(conn, user_id, start, end)
    home = totals(await home_flows(conn, spans, zone, start, end))
    return Balance(
        user_id,
        first_day,
        home.used_kwh,
        home.produced_kwh,
        home.imported_kwh - home.exported_kwh,
        len({span.device_id for span in spans}),
    )


def _role(device: str) -> str:
    """The SQL of the role of the iot_devices row `device`: registered, or its type's."""
    defaults = " ".join(f"WHEN '{kind}' THEN '{role}'" for kind, role in ROLE_OF.items())
    return f"coalesce({device}.role, CASE {device}.device_type {defaults} END)"


def _owner_then(owners: str, later: str) -> str:
    """The condition that the `owners` row of device_owners held at q.quarter_hour."""
    return (
        f"{owners}.since <= q.quarter_hour AND NOT EXISTS (SELECT 1 FROM device_owners "
        f"{later} WHERE {later}.device_id = {owners}.device_id AND {later}.since > {owners}.since "
        f"AND {later}.since <= q.quarter_hour)"
    )


def summary_view_ddl(local_date: Callable[[str, str], str]) -> str:
    """`user_energy_summary`: per user and local day, what their home used and produced and
    its net exchange with the grid (drawn less fed in), from the devices each user owned
    while they owned them (storage/owners.py) by role, as storage/household.py counts
    them: in a quarter hour when the user owned a grid meter, used = its import - its
    export + production + discharge - charge and net = import - export; else used is what
    consumers drew and net is that plus charge less production and discharge. From the
    15-minute rollup, in each user's zone as last recorded (storage/zones.py; none
    recorded: UTC). `local_date(time, offset_s)` is the database's expression of the date
    of a UTC time moved by an offset in seconds (`Schema.local_date`)."""
    zone = f"coalesce(u.zone, (SELECT e.zone FROM user_zones e WHERE e.user_id = '{EVERYONE}'))"
    offset = (
        f"coalesce((SELECT z.offset_s FROM zone_offsets z WHERE z.zone = {zone} "
        "AND z.since <= q.quarter_hour ORDER BY z.since DESC LIMIT 1), 0)"
    )
    metered = (
        "EXISTS (SELECT 1 FROM device_owners g JOIN iot_devices gd ON gd.device_id = "
        f"g.device_id WHERE g.user_id = o.user_id AND {_role('gd')} = 'grid' AND "
        f"{_owner_then('g', 'gn')})"
    )
    owned = (
        f"SELECT o.user_id, q.quarter_hour, q.data_type, q.energy_kwh, {offset} AS offset_s, "
        f"{_role('d')} AS role, CASE WHEN {metered} THEN 1 ELSE 0 END AS metered "
        "FROM energy_15min q JOIN device_owners o ON o.device_id = q.device_id "
        "JOIN iot_devices d ON d.device_id = q.device_id "
        "LEFT JOIN user_zones u ON u.user_id = o.user_id "
        f"WHERE o.user_id IS NOT NULL AND {_owner_then('o', 'n')}"
    )
    day = local_date("s.quarter_hour", "s.offset_s")
    e = "s.energy_kwh"
    signed = f"CASE s.data_type WHEN 'consumption' THEN {e} ELSE -{e} END"
    drawn = f"CASE s.data_type WHEN 'consumption' THEN {e} ELSE 0 END"
    made = f"CASE s.data_type WHEN 'production' THEN {e} ELSE 0 END"
    used = (
        f"sum(CASE WHEN s.metered = 1 THEN CASE s.role WHEN 'grid' THEN {signed} "
        f"WHEN 'battery' THEN -({signed}) WHEN 'production' THEN {made} ELSE 0 END "
        f"WHEN s.role = 'consumption' THEN {drawn} ELSE 0 END)"
    )
    produced = f"sum(CASE s.role WHEN 'production' THEN {made} ELSE 0 END)"
    net = (
        f"sum(CASE WHEN s.metered = 1 THEN CASE s.role WHEN 'grid' THEN {signed} ELSE 0 END "
        f"ELSE CASE s.role WHEN 'consumption' THEN {drawn} WHEN 'battery' THEN {signed} "
        f"WHEN 'production' THEN -({made}) ELSE 0 END END)"
    )
    return (
        f"CREATE VIEW {SUMMARY_VIEW} AS SELECT s.user_id, {day} AS day, "
        f"{used} AS consumption_kwh, {produced} AS production_kwh, {net} AS net_kwh "
        f"FROM ({owned}) AS s GROUP BY s.user_id, {day}"
    )
