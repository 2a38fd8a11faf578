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
    """Builds the topics devices publish to, under one configurable prefix (which may contain `/`).

    Parsing them is the canonical decoder's routes' job (ingest/decode/canonical.py).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")

    def telemetry(self, device_type: DeviceType, device_id: str) -> str:
        return f"{self.prefix}/{device_type}/{device_id}/{TELEMETRY}"

    def status(self, device_type: DeviceType, device_id: str) -> str:
        return f"{self.prefix}/{device_type}/{device_id}/{STATUS}"


def device_id_problem(device_id: str) -> str | None:
    """Why a device id is unusable, or None when it is fine."""
    if not device_id:
        return "device id is empty"
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        return f"device id is longer than {MAX_DEVICE_ID_LENGTH} characters"
    if not device_id.isprintable():
        return "device id contains control characters"
    return None
