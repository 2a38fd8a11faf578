"""Dead letters the writer makes itself (readings and statuses of devices that are not
registered, when `ingest.unknown_devices` is "reject"), and the row a dead letter becomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.records import Availability, DeadLetter, Reading


def split_registered(
    readings: Sequence[Reading], registered: dict[str, str | None]
) -> tuple[list[Reading], list[Reading]]:
    known = [r for r in readings if r.device_id in registered]
    unknown = [r for r in readings if r.device_id not in registered]
    return known, unknown


def unregistered_reading(reading: Reading, now: datetime) -> DeadLetter:
    reason = (
        f"device {reading.device_id!r} is not registered and ingest.unknown_devices is 'reject'"
    )
    return DeadLetter(
        reading.topic, reading.to_payload(), reason, received_at=now, kind="unknown_device"
    )


def unregistered_status(message: Availability) -> DeadLetter:
    reason = (
        f"device {message.device_id!r} is not registered and ingest.unknown_devices is 'reject'"
    )
    payload = b"online" if message.online else b"offline"
    return DeadLetter(
        message.topic, payload, reason, received_at=message.received_at, kind="unknown_device"
    )


def dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "topic": letter.topic,
        "payload": letter.payload,
        "payload_size": letter.payload_size,
        "reason": letter.reason,
        "received_at": letter.received_at,
    }
