"""The topic scheme devices publish to: `<prefix>/<device_type>/<device_id>/telemetry`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from storage import DeviceType

DEVICE_TYPES: frozenset[str] = frozenset(get_args(DeviceType))
TELEMETRY = "telemetry"
MAX_DEVICE_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class TelemetryTopic:
    device_type: DeviceType
    device_id: str


class TopicScheme:
    """Parses and builds topics under one configurable prefix (which may contain `/`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")

    @property
    def subscription(self) -> str:
        """The filter that matches every device's telemetry."""
        return f"{self.prefix}/+/+/{TELEMETRY}"

    def telemetry(self, device_type: DeviceType, device_id: str) -> str:
        return f"{self.prefix}/{device_type}/{device_id}/{TELEMETRY}"

    def parse(self, topic: str) -> TelemetryTopic | str:
        """The device a topic names, or the reason it names none."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return f"topic is not under the prefix {self.prefix!r}"
        parts = topic[len(head) :].split("/")
        if len(parts) != 3 or parts[2] != TELEMETRY:
            return f"topic does not match {self.prefix}/<device_type>/<device_id>/{TELEMETRY}"
        device_type, device_id, _ = parts
        if device_type not in DEVICE_TYPES:
            return f"unknown device type {device_type!r}: expected one of {sorted(DEVICE_TYPES)}"
        reason = device_id_problem(device_id)
        if reason is not None:
            return reason
        return TelemetryTopic(device_type, device_id)  # type: ignore[arg-type]


def device_id_problem(device_id: str) -> str | None:
    """Why a device id is unusable, or None when it is fine."""
    if not device_id:
        return "device id is empty"
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        return f"device id is longer than {MAX_DEVICE_ID_LENGTH} characters"
    if not device_id.isprintable():
        return "device id contains control characters"
    return None
