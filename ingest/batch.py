"""Gathering decoded messages into batches that flush at a size or after a delay."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.delivery import Delivery
from ingest.merge import MergeWindows, merged
from storage import Availability, DeadLetter, Reading, WriteBatch


@dataclass(slots=True)
class Batch:
    """Readings and rejects bound for one transaction, and the deliveries to ack after it."""

    opened_at: float
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    availability: list[Availability] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    # Readings still open to merging: (device, type, data type) -> (index, window end).
    open_merges: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    # Not due before this, while a merge window is open (ingest/merge.py).
    hold_until: float = 0.0

    @property
    def messages(self) -> int:
        """The messages this batch acknowledges once committed (each gave 0, 1 or more items)."""
        return len(self.deliveries)

    def to_write(self) -> WriteBatch:
        return WriteBatch(self.readings, self.dead_letters, self.availability)


class Batcher:
    """Fills batches on the receiving side; the writer takes them with `next_batch`.

    Nothing here bounds the number of items: the broker's in-flight window does, since no
    message is acknowledged before its batch commits.
    """

    def __init__(
        self,
        max_messages: int,
        max_delay_s: float,
        clock: Callable[[], float] = time.monotonic,
        merges: MergeWindows | None = None,
    ) -> None:
        self._max_messages = max_messages
        self._max_delay_s = max_delay_s
        self._clock = clock
        self._merges = merges or None
        self._full: deque[Batch] = deque()
        self._current: Batch | None = None
        self._closed = False
        self._wakeup = asyncio.Event()

    @property
    def pending(self) -> int:
        """Messages waiting for the writer."""
        return sum(b.messages for b in self._full) + (
            self._current.messages if self._current else 0
        )

    def add(self, items: Sequence[Reading | DeadLetter | Availability], delivery: Delivery) -> None:
        """What one message decoded to (perhaps nothing), and the delivery to ack after it."""
        if self._closed:
            raise RuntimeError("Batcher.add after close")
        batch = self._current
        if batch is None:
            batch = self._current = Batch(opened_at=self._clock())
            self._wakeup.set()
        for item in items:
            if isinstance(item, Reading):
                if self._merges is None or not self._merge(batch, item):
                    batch.readings.append(item)
            elif isinstance(item, DeadLetter):
                batch.dead_letters.append(item)
            else:
                batch.availability.append(item)
        batch.deliveries.append(delivery)
        if batch.messages >= self._max_messages:
            self._full.append(batch)
            self._current = None
            self._wakeup.set()

    def _merge(self, batch: Batch, reading: Reading) -> bool:
        """Merge `reading` into an open one of its device; False when it stays its own (and,
        if its topic merges, is open to the next)."""
        assert self._merges is not None
        window = self._merges.of(reading.topic)
        if window is None:
            return False
        now = self._clock()
        key = (reading.device_id, reading.device_type, reading.data_type)
        found = batch.open_merges.get(key)
        if found is not None and now <= found[1]:
            combined = merged(batch.readings[found[0]], reading)
            if combined is not None:
                batch.readings[found[0]] = combined
                return True
        batch.open_merges[key] = (len(batch.readings), now + window)
        batch.hold_until = max(batch.hold_until, now + window)
        return False

    def close(self) -> None:
        """No more items: `next_batch` hands out what is left, then returns None."""
        self._closed = True
        self._wakeup.set()

    async def next_batch(self) -> Batch | None:
        """The next batch that is full or due; None once closed and drained."""
        while True:
            if self._full:
                return self._full.popleft()
            current = self._current
            if current is not None:
                due = max(current.opened_at + self._max_delay_s, current.hold_until)
                wait = due - self._clock()
                if wait <= 0 or self._closed:
                    self._current = None
                    return current
            elif self._closed:
                return None
            else:
                wait = None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            except TimeoutError:
                continue
