"""The ingest daemon: MQTT source → decoder → batcher → single writer → ack.

One `async with` stack: the database engine and its writer outlive broker connections;
each connection runs a TaskGroup of a receiver and a writer loop. When the broker goes
away the group ends, whatever was received but not committed is dropped unacknowledged,
and the broker redelivers it to the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.batcher import Batch, Batcher
from ingest.decoders import Router, build_decoders
from ingest.errors import BrokerError
from ingest.health import Health
from ingest.http import HttpServer, Response
from ingest.metrics import CONTENT_TYPE, DaemonCollector, exposition, metrics_registry
from ingest.mqtt import Source, open_source
from ingest.settings import Settings
from ingest.stats import Stats
from ingest.upkeep import Facts, Upkeep
from storage import Backoff, BatchWriter, WriteResult, open_engine
from storage.checkpoints import WRITER_CHECKPOINT_PAGES, Checkpointer
from storage.engine import DAEMON_APPLICATION, sqlite_file
from storage.faults import crash_point
from storage.inuse import used_by_daemon
from storage.partition_stores import partition_store

log = structlog.get_logger("meterflow.daemon")

# Messages decoded between two yields to the event loop. A take can hold thousands; decoded
# in one go, they kept the writer's trips to the SQLite thread waiting for tens of ms.
RECEIVE_SLICE = 200


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._router = Router(build_decoders(settings), settings.ingest)
        # Availability topics are few, idempotent and often retained, which MQTT 5 never
        # delivers to a shared subscription: every daemon takes all of them itself.
        self._subscriptions = self._router.subscriptions(settings.mqtt.shared_group)
        self._last_received_at = datetime.now(UTC)
        self._batcher: Batcher | None = None
        self._source: Source | None = None
        self._writer: BatchWriter | None = None
        self._upkeep: Upkeep | None = None
        # When the pipeline last moved: a commit, or a fresh connection.
        self._progress_at = time.monotonic()
        self._http: HttpServer | None = None

    @property
    def ready(self) -> bool:
        return self.health().ready

    @property
    def http_port(self) -> int | None:
        """The port of the metrics and health endpoints, once they listen."""
        return None if self._http is None else self._http.port

    def health(self) -> Health:
        now = time.monotonic()
        threshold = self.settings.storage.unready_after_s
        writer, source, batcher = self._writer, self._source, self._batcher
        failing_since = writer.failing_since if writer else None
        last_commit = writer.last_commit_at if writer else None
        in_flight = source.unacked if source else 0
        return Health(
            connected=self.connected.is_set() and writer is not None,
            database_ok=failing_since is None or now - failing_since < threshold,
            stalled=in_flight > 0 and now - self._progress_at > threshold,
            in_flight=in_flight,
            pending=batcher.pending if batcher else 0,
            last_commit_age_s=None if last_commit is None else round(now - last_commit, 3),
        )

    def facts(self) -> Facts:
        return self._upkeep.facts if self._upkeep else Facts()

    def request_stop(self) -> None:
        """Stop reading, commit and acknowledge what was received, then return from `run`."""
        self._stop.set()

    async def run(self) -> None:
        settings = self.settings
        with used_by_daemon(settings.storage.url):
            await self._run()
        log.info("stopped", **self.stats.summary())

    async def _run(self) -> None:
        settings = self.settings
        # Checkpoints are the checkpointer's job; the writer's own is a safety net.
        options = replace(settings.storage.sqlite, wal_autocheckpoint_pages=WRITER_CHECKPOINT_PAGES)
        engine = open_engine(settings.storage.url, options, application=DAEMON_APPLICATION)
        try:
            async with (
                BatchWriter(
                    engine,
                    url=settings.storage.url,
                    unknown_devices=settings.ingest.unknown_devices,
                    backoff=Backoff(settings.storage.retry_initial_s, settings.storage.retry_max_s),
                ) as writer,
                self._checkpointer(engine) as checkpointer,
                self._endpoints(),
                asyncio.TaskGroup() as tasks,
            ):
                self._writer = writer
                store = partition_store(engine, settings.storage.url, settings.storage.sqlite)
                upkeep = self._upkeep = Upkeep(writer, store, settings)
                background = [
                    tasks.create_task(self._summarise(), name="meterflow.summary"),
                    tasks.create_task(upkeep.run(), name="meterflow.upkeep"),
                ]
                if checkpointer is not None:
                    background.append(
                        tasks.create_task(checkpointer.run(), name="meterflow.checkpoint")
                    )
                await self._consume(writer)
                for task in background:
                    task.cancel()
        finally:
            self._writer = None
            await engine.dispose()

    def _checkpointer(
        self, engine: AsyncEngine
    ) -> AbstractAsyncContextManager[Checkpointer | None]:
        if engine.dialect.name != "sqlite":
            return contextlib.nullcontext()
        storage = self.settings.storage
        return Checkpointer(
            sqlite_file(storage.url, "checkpoints"),
            storage.sqlite_checkpoint_interval_s,
            storage.sqlite_busy_timeout_ms,
        )

    def _endpoints(self) -> AbstractAsyncContextManager[object]:
        metrics = self.settings.metrics
        if metrics.port is None:
            return contextlib.nullcontext()
        registry = metrics_registry(DaemonCollector(self.stats, self.health, self.facts))

        def readyz() -> Response:
            health = self.health()
            status = HTTPStatus.OK if health.ready else HTTPStatus.SERVICE_UNAVAILABLE
            body = json.dumps(health.to_json()).encode() + b"\n"
            return Response(status, body, "application/json")

        self._http = HttpServer(
            metrics.host,
            metrics.port,
            {
                "/metrics": lambda: Response(HTTPStatus.OK, exposition(registry), CONTENT_TYPE),
                "/healthz": lambda: Response(HTTPStatus.OK, b"ok\n"),
                "/readyz": readyz,
            },
        )
        return self._http

    async def _consume(self, writer: BatchWriter) -> None:
        mqtt = self.settings.mqtt
        backoff = Backoff(mqtt.reconnect_initial_s, mqtt.reconnect_max_s)
        attempt = 0
        while not self._stop.is_set():
            lost: BaseException | None = None
            try:
                async with open_source(mqtt, self._subscriptions) as source:
                    self._source = source
                    attempt = 0
                    log.info(
                        "subscribed",
                        broker=mqtt.url,
                        topics=self._subscriptions,
                        client_id=mqtt.client_id,
                        receive_path=mqtt.client,
                    )
                    self._progress_at = time.monotonic()
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

    async def _pump(self, source: Source, writer: BatchWriter) -> None:
        batch = self.settings.batch
        batcher = self._batcher = Batcher(batch.max_rows, batch.max_delay_ms / 1000)
        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(self._receive(source, batcher), name="meterflow.receive")
            tasks.create_task(self._write(source, writer, batcher, tasks), name="meterflow.write")
            await self._stop.wait()
            # Graceful stop: no more reading; the writer drains, commits and acks the rest.
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            batcher.close()

    async def _receive(self, source: Source, batcher: Batcher) -> None:
        decode = self._router.decode
        stats = self.stats
        tick = timedelta(microseconds=1)
        while True:
            deliveries = await source.take()
            # Readings stamped with the receive time need distinct times: two messages of
            # one device must not meet on the unique key (device, data type, time).
            received_at = max(datetime.now(UTC), self._last_received_at + tick)
            stats.received += len(deliveries)
            for start in range(0, len(deliveries), RECEIVE_SLICE):
                if start:
                    await asyncio.sleep(0)
                for delivery in deliveries[start : start + RECEIVE_SLICE]:
                    items = decode(delivery.topic, delivery.payload, received_at)
                    if not items:
                        stats.ignored += 1
                    batcher.add(items, delivery)
                    received_at += tick
            self._last_received_at = received_at

    async def _write(
        self, source: Source, writer: BatchWriter, batcher: Batcher, tasks: asyncio.TaskGroup
    ) -> None:
        """Commit batches and acknowledge each after its commit, in order.

        The next batch is submitted while the one before commits, so the writer prepares
        and queues it meanwhile; acknowledgements still follow their own batch's commit,
        one batch after another. The acknowledging tasks run in the connection's task
        group, so that a batch that cannot be stored ends the group at once.
        """
        previous: asyncio.Task[None] | None = None
        while (batch := await batcher.next_batch()) is not None:
            crash_point("before-commit")
            started = time.perf_counter()
            committing = await writer.submit(batch.to_write())
            if previous is not None:
                await previous
            previous = tasks.create_task(
                self._acknowledge(source, batch, committing, started), name="meterflow.ack"
            )
        if previous is not None:
            await previous

    async def _acknowledge(
        self,
        source: Source,
        batch: Batch,
        committing: asyncio.Future[WriteResult],
        started: float,
    ) -> None:
        result = await committing
        self._progress_at = time.monotonic()
        now = time.time()
        self.stats.committed(
            result,
            len(batch),
            time.perf_counter() - started,
            (now - r.recorded_at.timestamp() for r in batch.readings),
        )
        for name in result.created_partitions:
            log.info("partition created", partition=name)
        crash_point("after-commit")
        source.ack(batch.deliveries)

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
