"""Owners at the time: a reading belongs to whoever owned its device when it was recorded,
and changing a device's owner never moves energy already measured.

`device_owners` keeps each device's changes of owner. A change made now takes effect at
the next quarter hour, so every 15-minute bucket has one owner and per-user totals come
from the rollups exactly; readings recorded before it, even ones arriving later, stay
the old owner's. A device's first owner, given before the device has published anything,
owns it from the beginning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import insert_for
from storage.tables import device_owners, iot_devices

BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
END = datetime(9999, 12, 31, tzinfo=UTC)
_QUARTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Ownership:
    """A device's energy in [since, until) belongs to one user."""

    device_id: str
    since: datetime
    until: datetime


def next_quarter_hour(now: datetime) -> datetime:
    """The first quarter-hour boundary at or after `now`."""
    floor = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    return floor if floor == now else floor + _QUARTER


async def change_owners(
    conn: AsyncConnection, owners: dict[str, str | None], now: datetime
) -> None:
    """Record new owners of devices, before the registry row says so: each change from
    the next quarter hour, or from the beginning for a device with neither an owner
    before nor a reading yet. Unchanged owners record nothing."""
    if not owners:
        return
    current = {
        row.device_id: row
        for row in await conn.execute(
            select(iot_devices.c.device_id, iot_devices.c.user_id, iot_devices.c.last_seen).where(
                iot_devices.c.device_id.in_(sorted(owners))
            )
        )
    }
    owned_before = set(
        await conn.scalars(
            select(device_owners.c.device_id)
            .where(device_owners.c.device_id.in_(sorted(owners)))
            .distinct()
        )
    )
    rows = []
    for device_id, user_id in sorted(owners.items()):
        row = current.get(device_id)
        if row is not None and row.user_id == user_id:
            continue
        fresh = device_id not in owned_before and (row is None or row.last_seen is None)
        since = BEGINNING if fresh else next_quarter_hour(now)
        rows.append({"device_id": device_id, "since": since, "user_id": user_id})
    if rows:
        statement = insert_for(conn)(device_owners)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["device_id", "since"],
                set_={"user_id": statement.excluded.user_id},
            ),
            rows,
        )


async def ownerships(
    conn: AsyncConnection, user_id: str, start: datetime, end: datetime
) -> list[Ownership]:
    """The spans in which `user_id` owned each device, clipped to [start, end)."""
    devices = select(device_owners.c.device_id).where(device_owners.c.user_id == user_id)
    result = await conn.execute(
        select(device_owners.c.device_id, device_owners.c.since, device_owners.c.user_id)
        .where(device_owners.c.device_id.in_(devices))
        .order_by(device_owners.c.device_id, device_owners.c.since)
    )
    rows = list(result)
    spans = []
    for index, (device_id, since, owner) in enumerate(rows):
        following = rows[index + 1] if index + 1 < len(rows) else None
        until = following[1] if following and following[0] == device_id else END
        first, last = max(since, start), min(until, end)
        if owner == user_id and first < last:
            spans.append(Ownership(device_id, first, last))
    return spans


def whole(device_ids: Sequence[str], start: datetime, end: datetime) -> list[Ownership]:
    """The devices over all of [start, end), whoever owned them."""
    return [Ownership(device_id, start, end) for device_id in device_ids]
