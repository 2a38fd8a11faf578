"""What a decoder is: routes (topic patterns) and what each turns a message into."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ingest.decode.common import availability
from ingest.decode.patterns import TopicPattern
from ingest.errors import FieldError
from storage import Availability, DeadLetter, DeviceType, Reading

Decoded = Reading | DeadLetter | Availability
# (topic, named levels, payload, receive time) -> what the message says; [] for nothing
# worth storing (a heartbeat, a relay state). Raises FieldError for a malformed document.
Handler = Callable[[str, Mapping[str, str], bytes, datetime], Sequence[Decoded]]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: TopicPattern
    handle: Handler
    # Availability topics are retained, and MQTT 5 gives no retained message to a shared
    # subscription: every daemon subscribes to those itself.
    shareable: bool = True


class Decoder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def routes(self) -> Sequence[Route]: ...


def availability_handler(device_type: DeviceType, expected: str) -> Handler:
    """The handler of an availability topic: online/offline (in any of the usual shapes)."""

    def handle(
        topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        online = availability(payload)
        if online is None:
            raise FieldError("payload", f"expected {expected}")
        return (Availability(topic, captures["device_id"], device_type, online, received_at),)

    return handle


def split_routes(
    topics: Sequence[str], availability_suffix: str, on_availability: Handler, otherwise: Handler
) -> tuple[Route, ...]:
    """Routes for a family whose availability topics end in `availability_suffix`."""
    return tuple(
        Route(TopicPattern(t), on_availability, shareable=False)
        if t.endswith(availability_suffix)
        else Route(TopicPattern(t), otherwise)
        for t in topics
    )
