"""The pipeline: source → decode → batch → write → acknowledge, reconnecting to the broker.

Each broker connection runs a task group of a receiver (take, decode, batch) and a writer
loop (hand batches to storage, acknowledge after each commit). When the broker goes away
the group ends, whatever was received but not committed is dropped unacknowledged, and
the broker redelivers it to the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

import structlog

from ingest.acknowledge import Acknowledger
from ingest.batch import Batcher
from ingest.decode import ReceiveClock, Router
from ingest.errors import BrokerError
from ingest.refusal import RefusalWatch
from ingest.settings import BatchSettings, MqttSettings, PeriodicPublish
from ingest.source import Source, open_source
from ingest.stats import Stats
from ingest.takeover import TakeoverWatch
from storage import Backoff, WriteBatch, WriteResult
from storage.faults import crash_point

log = structlog.get_logger("meterflow.pipeline")

# Messages decoded between two yields to the event loop. A take can hold thousands; decoded
# in one go, they kept the writer's trips to the SQLite thread waiting for tens of ms.
RECEIVE_SLICE = 200


class Writer(Protocol):
    """What the pipeline needs of storage: batches committed in the order submitted."""

    async def submit(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Start storing `batch`; the future gives its result once it has committed."""
        ...


class Pipeline:
    """Runs the stages on one broker connection after another until asked to stop.

    What it shows of itself (`connected`, `in_flight`, `pending`, `progress_at`) is read
    by health checks, metrics and log summaries.
    """

    def __init__(
        self, mqtt: MqttSettings, batch: BatchSettings, router: Router, stats: Stats
    ) -> None:
        self._mqtt = mqtt
        self._batch = batch
        self._router = router
        self._stats = stats
        # Availability topics are few, idempotent and often retained, which MQTT 5 never
        # delivers to a shared subscription: every daemon takes all of them itself.
        self.subscriptions = router.subscriptions(mqtt.shared_group)
        self._clock = ReceiveClock()
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._source: Source | None = None
        self._batcher: Batcher | None = None
        self._progress_at = time.monotonic()
        self._refusals = RefusalWatch()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def refusal(self) -> str | None:
        """The broker's lasting refusal of our connection, with its fix, while it lasts."""
        return self._refusals.refusal

    @property
    def in_flight(self) -> int:
        """Messages received and not yet acknowledged."""
        return 0 if self._source is None else self._source.unacked

    @property
    def pending(self) -> int:
        """Messages decoded and waiting for the writer."""
        return 0 if self._batcher is None else self._batcher.pending

    @property
    def progress_at(self) -> float:
        """When the pipeline last moved (`time.monotonic`): a commit, or a new connection."""
        return self._progress_at

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop reading, commit and acknowledge what was received, then return from `run`."""
        self._stop.set()

    async def run(self, writer: Writer) -> None:
        """Connect, run the stages into `writer`, reconnect with backoff when the broker
        goes away; return once asked to stop and everything received is acknowledged."""
        mqtt = self._mqtt
        backoff = Backoff(mqtt.reconnect_initial_s, mqtt.reconnect_max_s)
        attempt = 0
        takeovers = TakeoverWatch(mqtt.client_id)
        refusals = self._refusals
        while not self._stop.is_set():
            lost: BaseException | None = None
            try:
                async with open_source(mqtt, self.subscriptions) as source:
                    self._source = source
                    attempt = 0
                    takeovers.connected()
                    refusals.connected()
                    log.info(
                        "subscribed",
                        broker=mqtt.url,
                        topics=self.subscriptions,
                        client_id=mqtt.client_id,
                        receive_path=mqtt.client,
                        protocol=source.protocol,
                    )
                    self._progress_at = time.monotonic()
                    self._connected.set()
                    try:
                        await self._pump(source, writer)
                    except* BrokerError as group:
                        lost = group.exceptions[0]
            except BrokerError as exc:
                lost = exc
            finally:
                self._connected.clear()
                self._batcher = self._source = None
            if lost is None:
                return
            self._stats.reconnects += 1
            delay = backoff.delay(attempt)
            attempt += 1
            if not takeovers.lost(lost) and not refusals.lost(lost):
                log.warning("broker unavailable, reconnecting", error=str(lost), delay_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _pump(self, source: Source, writer: Writer) -> None:
        batch = self._batch
        batcher = self._batcher = Batcher(
            batch.max_messages, batch.max_delay_ms / 1000, merges=self._router.merges
        )
        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(self._receive(source, batcher), name="meterflow.receive")
            tasks.create_task(self._write(source, writer, batcher, tasks), name="meterflow.write")
            askers = [
                tasks.create_task(_keep_asking(source, every), name="meterflow.publish_every")
                for every in self._mqtt.publish_every
            ]
            await self._stop.wait()
            # Graceful stop: no more reading; the writer drains, commits and acks the rest.
            for task in (receiver, *askers):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            batcher.close()

    async def _receive(self, source: Source, batcher: Batcher) -> None:
        decode = self._router.decode
        stats = self._stats
        while True:
            deliveries = await source.take()
            stats.received += len(deliveries)
            stamps = self._clock.stamps(len(deliveries))
            for start in range(0, len(deliveries), RECEIVE_SLICE):
                if start:
                    await asyncio.sleep(0)
                for delivery in deliveries[start : start + RECEIVE_SLICE]:
                    items = decode(delivery.topic, delivery.payload, next(stamps))
                    if not items:
                        stats.ignored += 1
                    batcher.add(items, delivery)

    async def _write(
        self, source: Source, writer: Writer, batcher: Batcher, tasks: asyncio.TaskGroup
    ) -> None:
        """Hand batches to the writer; the next is submitted while the one before commits."""
        acks = Acknowledger(source, self._stats, tasks, self._moved)
        while (batch := await batcher.next_batch()) is not None:
            crash_point("before-commit")
            started = time.perf_counter()
            committing = await writer.submit(batch.to_write())
            await acks.follow(batch, committing, started)
        await acks.drain()

    def _moved(self) -> None:
        self._progress_at = time.monotonic()


async def _keep_asking(source: Source, every: PeriodicPublish) -> None:
    """Publish `every` at once and then every interval, for as long as the connection lasts."""
    payload = every.payload.encode()
    while True:
        await source.publish(every.topic, payload)
        await asyncio.sleep(every.interval_s)
