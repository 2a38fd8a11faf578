"""What a batch of readings says about each device it came from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from storage.records import DeviceType, Reading


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


_NEWER_BATTERY = (
    "excluded.battery_updated_at IS NOT NULL AND (iot_devices.battery_updated_at IS NULL"
    " OR excluded.battery_updated_at >= iot_devices.battery_updated_at)"
)


def registry_update(latest_seen: str) -> str:
    """The ON CONFLICT clause of both backends' registry upserts.

    `latest_seen` is the dialect's expression for the later of the stored and the new
    last_seen, so last_seen never moves backwards; the battery level changes only for a
    reading at least as new as the one it came from. A reading brings an inactive device
    back to active; a status an operator set (maintenance, error) stays until changed.
    """
    return f"""ON CONFLICT (device_id) DO UPDATE SET
    last_seen = {latest_seen},
    battery_level = CASE WHEN {_NEWER_BATTERY} THEN excluded.battery_level
                         ELSE iot_devices.battery_level END,
    battery_updated_at = CASE WHEN {_NEWER_BATTERY} THEN excluded.battery_updated_at
                              ELSE iot_devices.battery_updated_at END,
    status = CASE WHEN iot_devices.status = 'inactive' THEN 'active' ELSE iot_devices.status END,
    updated_at = excluded.updated_at"""
