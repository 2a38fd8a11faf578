"""Receive times: the time a message arrived, never the same instant twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

_TICK = timedelta(microseconds=1)


class ReceiveClock:
    """Stamps each message of a take with its receive time, 1 µs after the one before.

    Devices without a clock get their readings stamped with the receive time, and two
    messages of one device must not meet on the storage's unique key (device, data type,
    time): a take of several messages from one device would otherwise share an instant.
    The wall clock is read once per take, which is all the precision the key needs.
    """

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)

    def stamps(self, count: int) -> Iterator[datetime]:
        """`count` receive times from now on, strictly after every time given before."""
        at = max(datetime.now(UTC), self._last + _TICK)
        for _ in range(count):
            self._last = at
            yield at
            at += _TICK
