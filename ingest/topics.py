"""The topic scheme devices publish to: `<prefix>/<device_type>/<device_id>/<channel>`.

Two channels: `telemetry` carries readings, `status` carries availability (`online` or
`offline`, typically a retained message and the device's MQTT last will).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

from storage import DeviceType

DEVICE_TYPES: frozenset[str] = frozenset(get_args(DeviceType))
TELEMETRY = "telemetry"
STATUS = "status"
MAX_DEVICE_ID_LENGTH = 128

Channel = Literal["telemetry", "status"]


class DeviceTopic(NamedTuple):
    """The device a topic names; a NamedTuple because one is built per message."""

    device_type: DeviceType
    device_id: str
    channel: Channel = "telemetry"


class TopicScheme:
    """Parses and builds topics under one configurable prefix (which may contain `/`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")

    @property
    def subscription(self) -> str:
        """The filter that matches every device's telemetry."""
        return f"{self.prefix}/+/+/{TELEMETRY}"

    @property
    def status_subscription(self) -> str:
        """The filter that matches every device's availability messages."""
        return f"{self.prefix}/+/+/{STATUS}"

    def telemetry(self, device_type: DeviceType, device_id: str) -> str:
        return f"{self.prefix}/{device_type}/{device_id}/{TELEMETRY}"

    def status(self, device_type: DeviceType, device_id: str) -> str:
        return f"{self.prefix}/{device_type}/{device_id}/{STATUS}"

    def parse(self, topic: str) -> DeviceTopic | str:
        """The device a topic names, or the reason it names none."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return f"topic is not under the prefix {self.prefix!r}"
        parts = topic[len(head) :].split("/")
        if len(parts) != 3 or parts[2] not in {TELEMETRY, STATUS}:
            return (
                f"topic does not match {self.prefix}/<device_type>/<device_id>/"
                f"{TELEMETRY} (or /{STATUS})"
            )
        device_type, device_id, channel = parts
        if device_type not in DEVICE_TYPES:
            return f"unknown device type {device_type!r}: expected one of {sorted(DEVICE_TYPES)}"
        reason = device_id_problem(device_id)
        if reason is not None:
            return reason
        return DeviceTopic(device_type, device_id, channel)  # type: ignore[arg-type]


def device_id_problem(device_id: str) -> str | None:
    """Why a device id is unusable, or None when it is fine."""
    if not device_id:
        return "device id is empty"
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        return f"device id is longer than {MAX_DEVICE_ID_LENGTH} characters"
    if not device_id.isprintable():
        return "device id contains control characters"
    return None
