"""The device registry beyond what a batch upserts: status changes, registration, listing.

Every function runs inside the caller's transaction, with SQLAlchemy Core statements both
backends share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, and_, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import insert_for
from storage.owners import change_owners
from storage.records import IMPLAUSIBLE, Availability, DeviceType, Role
from storage.tables import energy_parent, iot_devices

# Readings of every month: the view over the monthly tables on SQLite, the parent table on
# PostgreSQL.
_READINGS = energy_parent()

DeviceStatus = Literal["active", "inactive", "maintenance", "error"]
REGISTRATION_FIELDS = (
    "device_type", "user_id", "name", "location", "firmware_version", "max_power_kw", "role"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Registration:
    """What an operator tells meterflow about a device before (or after) it publishes."""

    device_id: str
    device_type: DeviceType
    user_id: str | None = None
    name: str | None = None
    location: str | None = None
    firmware_version: str | None = None
    max_power_kw: float | None = None
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """A registry row, as listed to operators."""

    device_id: str
    device_type: str
    status: str
    user_id: str | None
    name: str | None
    location: str | None
    last_seen: datetime | None
    battery_level: float | None
    firmware_version: str | None
    max_power_kw: float | None
    role: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> Device:
        return cls(**{name: getattr(row, name) for name in cls.__slots__})


async def mark_offline(
    conn: AsyncConnection, cutoffs: Mapping[DeviceType, datetime], now: datetime
) -> list[str]:
    """Mark active devices not seen since their type's cutoff inactive; return their ids.

    A registered device that has never published counts from its registration.
    """
    went: list[str] = []
    for device_type, cutoff in cutoffs.items():
        result = await conn.execute(
            update(iot_devices)
            .where(
                iot_devices.c.device_type == device_type,
                iot_devices.c.status == "active",
                func.coalesce(iot_devices.c.last_seen, iot_devices.c.created_at) < cutoff,
            )
            .values(status="inactive", updated_at=now)
            .returning(iot_devices.c.device_id)
        )
        went.extend(result.scalars())
    return sorted(went)


async def statuses(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, str]:
    result = await conn.execute(
        select(iot_devices.c.device_id, iot_devices.c.status).where(
            iot_devices.c.device_id.in_(device_ids)
        )
    )
    return {row.device_id: row.status for row in result}


async def status_counts(conn: AsyncConnection) -> dict[str, int]:
    result = await conn.execute(
        select(iot_devices.c.status, func.count().label("devices")).group_by(iot_devices.c.status)
    )
    return {row.status: row.devices for row in result}


async def low_battery_count(conn: AsyncConnection, threshold_pct: float) -> int:
    result = await conn.execute(
        select(func.count()).where(iot_devices.c.battery_level < threshold_pct)
    )
    return int(result.scalar_one())


async def set_status(
    conn: AsyncConnection, device_ids: Sequence[str], status: DeviceStatus, now: datetime
) -> list[str]:
    """Set the status of the given devices; return the ids that exist."""
    result = await conn.execute(
        update(iot_devices)
        .where(iot_devices.c.device_id.in_(device_ids))
        .values(status=status, updated_at=now)
        .returning(iot_devices.c.device_id)
    )
    return sorted(result.scalars())


async def register(conn: AsyncConnection, devices: Sequence[Registration], now: datetime) -> None:
    """Insert devices, or update what is given of those that exist (never their readings' state).
    A new owner is recorded in the ownership history first (storage/owners.py)."""
    await change_owners(conn, {d.device_id: d.user_id for d in devices if d.user_id}, now)
    insert = insert_for(conn)
    for device in devices:
        values = {
            name: getattr(device, name)
            for name in REGISTRATION_FIELDS
            if getattr(device, name) is not None
        }
        statement = insert(iot_devices).values(
            device_id=device.device_id, created_at=now, updated_at=now, **values
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[iot_devices.c.device_id],
                set_={**{name: statement.excluded[name] for name in values}, "updated_at": now},
            )
        )


async def list_devices(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    device_type: str | None = None,
    user_id: str | None = None,
    below_battery_pct: float | None = None,
) -> list[Device]:
    conditions = []
    if status is not None:
        conditions.append(iot_devices.c.status == status)
    if device_type is not None:
        conditions.append(iot_devices.c.device_type == device_type)
    if user_id is not None:
        conditions.append(iot_devices.c.user_id == user_id)
    if below_battery_pct is not None:
        conditions.append(iot_devices.c.battery_level < below_battery_pct)
    columns = [iot_devices.c[name] for name in Device.__slots__]
    result = await conn.execute(
        select(*columns).where(and_(true(), *conditions)).order_by(iot_devices.c.device_id)
    )
    return [Device.from_row(row) for row in result]


async def find_device(conn: AsyncConnection, device_id: str) -> Device | None:
    columns = [iot_devices.c[name] for name in Device.__slots__]
    result = await conn.execute(select(*columns).where(iot_devices.c.device_id == device_id))
    row = result.first()
    return None if row is None else Device.from_row(row)


async def max_powers(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, float]:
    """The maximum power registered for each of `device_ids` that has one."""
    result = await conn.execute(
        select(iot_devices.c.device_id, iot_devices.c.max_power_kw).where(
            iot_devices.c.device_id.in_(device_ids), iot_devices.c.max_power_kw.is_not(None)
        )
    )
    return {row.device_id: row.max_power_kw for row in result}


@dataclass(frozen=True, slots=True)
class Implausible:
    """A reading whose counter gave more energy than its device could have measured."""

    recorded_at: datetime
    counter: str | None
    counter_kwh: float | None


async def implausible_readings(
    conn: AsyncConnection, device_id: str, limit: int
) -> list[Implausible]:
    """The device's newest implausible readings, newest first, with their raw counters."""
    result = await conn.execute(
        select(_READINGS.c.recorded_at, _READINGS.c.metadata)
        .where(_READINGS.c.device_id == device_id, _READINGS.c.quality == IMPLAUSIBLE)
        .order_by(_READINGS.c.recorded_at.desc())
        .limit(limit)
    )
    return [
        Implausible(at, (note or {}).get("counter"), (note or {}).get("counter_kwh"))
        for at, note in result
    ]


async def ids_with_status(conn: AsyncConnection, status: DeviceStatus) -> list[str]:
    result = await conn.execute(
        select(iot_devices.c.device_id).where(iot_devices.c.status == status)
    )
    return list(result.scalars())


async def apply_availability(
    conn: AsyncConnection,
    messages: Sequence[Availability],
    now: datetime,
    *,
    register_unknown: bool,
) -> list[Availability]:
    """Set devices active or inactive as their status messages say; the latest one wins.

    Statuses an operator set (maintenance, error) stay. Unknown devices are registered
    with the status their message gives, or, when `register_unknown` is false, returned.
    """
    if not messages:
        # The common batch: no status messages, and no reason to ask the database.
        return []
    latest = {message.device_id: message for message in messages}
    known = await statuses(conn, sorted(latest))
    insert = insert_for(conn)
    unknown: list[Availability] = []
    for device_id, message in sorted(latest.items()):
        new, old = ("active", "inactive") if message.online else ("inactive", "active")
        current = known.get(device_id)
        if current is None and not register_unknown:
            unknown.append(message)
        elif current is None:
            await conn.execute(
                insert(iot_devices)
                .values(
                    device_id=device_id,
                    device_type=message.device_type,
                    status=new,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=[iot_devices.c.device_id])
            )
        elif current == old:
            await conn.execute(
                update(iot_devices)
                .where(iot_devices.c.device_id == device_id, iot_devices.c.status == old)
                .values(status=new, updated_at=now)
            )
    return unknown


async def newest_sighting(conn: AsyncConnection) -> datetime | None:
    """When any device was last seen (the newest reading time)."""
    result = await conn.execute(select(func.max(iot_devices.c.last_seen)))
    newest: datetime | None = result.scalar_one()
    return newest
