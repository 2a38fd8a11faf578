"""Keeping the device registry current from the readings a batch stored."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.records import DeviceType, Reading
from storage.tables import iot_devices


@dataclass(slots=True)
class DeviceSighting:
    """What one batch says about one device: its newest reading and newest battery level."""

    device_id: str
    device_type: DeviceType
    last_seen: datetime
    battery_level: float | None = None
    battery_updated_at: datetime | None = None

    def see(self, reading: Reading) -> None:
        self.last_seen = max(self.last_seen, reading.recorded_at)
        if reading.battery_pct is not None and (
            self.battery_updated_at is None or reading.recorded_at >= self.battery_updated_at
        ):
            self.battery_level = reading.battery_pct
            self.battery_updated_at = reading.recorded_at


def sightings(readings: Iterable[Reading]) -> list[DeviceSighting]:
    """One sighting per device, so a batch touches each registry row once."""
    by_device: dict[str, DeviceSighting] = {}
    for reading in readings:
        sighting = by_device.get(reading.device_id)
        if sighting is None:
            sighting = DeviceSighting(reading.device_id, reading.device_type, reading.recorded_at)
            by_device[reading.device_id] = sighting
        sighting.see(reading)
    return list(by_device.values())


async def owners(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, str | None]:
    """The registered devices among `device_ids`, each with its owner's user id."""
    result: dict[str, str | None] = {}
    # SQLite caps bound parameters per statement; stay well below every version's limit.
    for start in range(0, len(device_ids), 900):
        chunk = device_ids[start : start + 900]
        rows = await conn.execute(
            select(iot_devices.c.device_id, iot_devices.c.user_id).where(
                iot_devices.c.device_id.in_(chunk)
            )
        )
        result.update({row.device_id: row.user_id for row in rows})
    return result


@cache
def _upsert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(iot_devices)
    new, old = stmt.excluded, iot_devices.c
    newer_battery = (new.battery_updated_at.is_not(None)) & (
        old.battery_updated_at.is_(None) | (new.battery_updated_at >= old.battery_updated_at)
    )
    newest = func.greatest if dialect == "postgresql" else func.max
    return stmt.on_conflict_do_update(
        index_elements=[old.device_id],
        set_={
            "last_seen": newest(func.coalesce(old.last_seen, new.last_seen), new.last_seen),
            "battery_level": case((newer_battery, new.battery_level), else_=old.battery_level),
            "battery_updated_at": case(
                (newer_battery, new.battery_updated_at), else_=old.battery_updated_at
            ),
            "status": "active",
            "updated_at": new.updated_at,
        },
    )


async def record_sightings(
    conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
) -> None:
    """Upsert every sighted device: last_seen never moves backwards, status back to active."""
    if not seen:
        return
    rows: list[dict[str, Any]] = [
        {
            "device_id": s.device_id,
            "device_type": s.device_type,
            "status": "active",
            "last_seen": s.last_seen,
            "battery_level": s.battery_level,
            "battery_updated_at": s.battery_updated_at,
            "created_at": now,
            "updated_at": now,
        }
        for s in seen
    ]
    await conn.execute(_upsert(conn.dialect.name), rows)
