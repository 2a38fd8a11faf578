"""The ingest daemon: MQTT source → decoder → batcher → single writer → ack.

One `async with` stack: the database engine and its writer outlive broker connections;
each connection runs a TaskGroup of a receiver and a writer loop. When the broker goes
away the group ends, whatever was received but not committed is dropped unacknowledged,
and the broker redelivers it to the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import structlog

from ingest.batcher import Batcher
from ingest.decoder import CanonicalDecoder
from ingest.errors import BrokerError
from ingest.mqtt import MqttSource
from ingest.settings import Settings
from ingest.stats import Stats
from ingest.topics import TopicScheme
from storage import Backoff, BatchWriter, DeadLetter, open_engine
from storage.faults import crash_point

log = structlog.get_logger("meterflow.daemon")

# Months turn over rarely; checking every few hours keeps the partitions ahead in place
# across a month boundary however long the daemon runs.
CREATE_AHEAD_EVERY_S = 6 * 3600


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._scheme = TopicScheme(settings.mqtt.topic_prefix)
        group = settings.mqtt.shared_group
        self._subscription = (
            f"$share/{group}/{self._scheme.subscription}" if group else self._scheme.subscription
        )
        self._decoder = CanonicalDecoder(self._scheme, settings.ingest)
        self._batcher: Batcher | None = None
        self._source: MqttSource | None = None
        self._writer: BatchWriter | None = None

    @property
    def ready(self) -> bool:
        """Connected to the broker, and commits are not failing for long (see unready_after_s)."""
        writer = self._writer
        if not self.connected.is_set() or writer is None:
            return False
        failing_since = writer.failing_since
        return (
            failing_since is None
            or time.monotonic() - failing_since < self.settings.storage.unready_after_s
        )

    def request_stop(self) -> None:
        """Stop reading, commit and acknowledge what was received, then return from `run`."""
        self._stop.set()

    async def run(self) -> None:
        settings = self.settings
        engine = open_engine(settings.storage.url, settings.storage.sqlite)
        try:
            async with (
                BatchWriter(
                    engine,
                    url=settings.storage.url,
                    unknown_devices=settings.ingest.unknown_devices,
                    backoff=Backoff(settings.storage.retry_initial_s, settings.storage.retry_max_s),
                ) as writer,
                asyncio.TaskGroup() as tasks,
            ):
                self._writer = writer
                summary = tasks.create_task(self._summarise(), name="meterflow.summary")
                ahead = tasks.create_task(self._create_ahead(writer), name="meterflow.ahead")
                await self._consume(writer)
                summary.cancel()
                ahead.cancel()
        finally:
            await engine.dispose()
        log.info("stopped", **self.stats.summary())

    async def _consume(self, writer: BatchWriter) -> None:
        mqtt = self.settings.mqtt
        backoff = Backoff(mqtt.reconnect_initial_s, mqtt.reconnect_max_s)
        attempt = 0
        while not self._stop.is_set():
            lost: BaseException | None = None
            try:
                async with MqttSource(mqtt, self._subscription) as source:
                    self._source = source
                    attempt = 0
                    log.info(
                        "subscribed",
                        broker=mqtt.url,
                        topic=self._subscription,
                        client_id=mqtt.client_id,
                    )
                    self.connected.set()
                    try:
                        await self._pump(source, writer)
                    except* BrokerError as group:
                        lost = group.exceptions[0]
            except BrokerError as exc:
                lost = exc
            finally:
                self.connected.clear()
                self._batcher = self._source = None
            if lost is None:
                return
            self.stats.reconnects += 1
            delay = backoff.delay(attempt)
            attempt += 1
            log.warning("broker unavailable, reconnecting", error=str(lost), delay_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _pump(self, source: MqttSource, writer: BatchWriter) -> None:
        batch = self.settings.batch
        batcher = self._batcher = Batcher(batch.max_rows, batch.max_delay_ms / 1000)
        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(self._receive(source, batcher), name="meterflow.receive")
            tasks.create_task(self._write(source, writer, batcher), name="meterflow.write")
            await self._stop.wait()
            # Graceful stop: no more reading; the writer drains, commits and acks the rest.
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            batcher.close()

    async def _receive(self, source: MqttSource, batcher: Batcher) -> None:
        decode = self._decoder.decode
        stats = self.stats
        while True:
            deliveries = await source.take()
            received_at = datetime.now(UTC)
            stats.received += len(deliveries)
            for delivery in deliveries:
                item = decode(delivery.topic, delivery.payload, received_at)
                if isinstance(item, DeadLetter):
                    log.debug("rejected", topic=item.topic, reason=item.reason)
                batcher.add(item, delivery)

    async def _write(self, source: MqttSource, writer: BatchWriter, batcher: Batcher) -> None:
        while (batch := await batcher.next_batch()) is not None:
            crash_point("before-commit")
            started = time.perf_counter()
            result = await writer.write(batch.to_write())
            self.stats.committed(result, time.perf_counter() - started)
            for name in result.created_partitions:
                log.info("partition created", partition=name)
            crash_point("after-commit")
            source.ack(batch.deliveries)

    async def _create_ahead(self, writer: BatchWriter) -> None:
        """Keep partitions for the coming months in place, and report stray readings."""
        while True:
            created = await writer.create_ahead(self.settings.storage.partitions_ahead)
            for name in created:
                log.info("partition created", partition=name, ahead=True)
            stray = await writer.stray_rows()
            if stray:
                log.warning(
                    "readings in the default partition",
                    rows=stray,
                    fix="meterflow partitions repair",
                )
            await asyncio.sleep(CREATE_AHEAD_EVERY_S)

    async def _summarise(self) -> None:
        interval = self.settings.log.summary_interval_s
        while True:
            await asyncio.sleep(interval)
            batcher, source = self._batcher, self._source
            log.info(
                "summary",
                pending=batcher.pending if batcher else 0,
                in_flight=source.unacked if source else 0,
                connected=self.connected.is_set(),
                ready=self.ready,
                **self.stats.summary(),
            )
