"""Local time for SQL alone: the `[analytics]` time zones written into the database, so a
view such as `user_energy_summary` counts each user's local days without Python.

Neither SQLite nor a PostgreSQL server whose tzdata may differ from Python's gives the
same local days as `storage/energy.py`, so both read the same table: `zone_offsets` holds,
for each zone in use, its UTC offset from each change on (Python's zoneinfo, 1970 to
2100; the first row reaches back to the beginning and the last on for ever), and
`user_zones` each user's zone, user id '' standing for everyone without their own. The
offset at a time is the row with the latest `since` not after it, as for owners.

The daemon writes them at start and every command that opens the database does when the
settings changed; SQL therefore follows the settings of the last of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.owners import BEGINNING
from storage.settings import AnalyticsSettings
from storage.tables import user_zones, zone_offsets

EVERYONE = ""
FIRST_CHANGE = datetime(1970, 1, 1, tzinfo=UTC)
LAST_CHANGE = datetime(2100, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)

Offsets = list[tuple[datetime, int]]


def _offset_s(zone: ZoneInfo, at: datetime) -> int:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds())


def offsets(name: str) -> Offsets:
    """`name`'s UTC offset in seconds from each change on: (since, offset_s), the first
    since BEGINNING. Changes are found a day apart, to the second (tzdata has no two
    within a day)."""
    zone = ZoneInfo(name)
    changes = [(BEGINNING, _offset_s(zone, FIRST_CHANGE))]
    at = FIRST_CHANGE
    while at < LAST_CHANGE:
        later = at + _DAY
        if _offset_s(zone, later) == changes[-1][1]:
            at = later
            continue
        before, after = at, later
        while after - before > _SECOND:
            middle = before + (after - before) / 2
            middle = middle.replace(microsecond=0)
            if _offset_s(zone, middle) == changes[-1][1]:
                before = middle
            else:
                after = middle
        changes.append((after, _offset_s(zone, after)))
        at = after
    return changes


def wanted(settings: AnalyticsSettings) -> dict[str, str]:
    """Each user's zone by user id, EVERYONE's included."""
    return {EVERYONE: settings.timezone, **settings.user_timezones}


async def record_zones(conn: AsyncConnection, settings: AnalyticsSettings) -> bool:
    """Write the settings' zones and their offsets where the database holds others, in
    one transaction; True if anything changed."""
    users = wanted(settings)
    zone_rows = {
        (zone, since, offset) for zone in set(users.values()) for since, offset in offsets(zone)
    }
    async with conn.begin():
        stored_users = dict((await conn.execute(select(user_zones))).tuples().all())
        stored_zones = set((await conn.execute(select(zone_offsets))).tuples().all())
        if stored_users == users and stored_zones == zone_rows:
            return False
        await conn.execute(delete(user_zones))
        await conn.execute(delete(zone_offsets))
        await conn.execute(insert(user_zones), _rows(("user_id", "zone"), users.items()))
        await conn.execute(
            insert(zone_offsets), _rows(("zone", "since", "offset_s"), sorted(zone_rows))
        )
    return True


def _rows(names: tuple[str, ...], values: Iterable[tuple[object, ...]]) -> list[dict[str, object]]:
    return [dict(zip(names, row, strict=True)) for row in values]
