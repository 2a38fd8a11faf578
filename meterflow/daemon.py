"""The ingest daemon: the database and its writer, the pipeline, upkeep and the endpoints.

One `async with` stack: the engine and its writer outlive broker connections, which the
pipeline (ingest/pipeline.py) opens and reopens; upkeep, checkpoints and the log summary
run beside it in one task group. A storage error no retry can mend ends the daemon with
that error alone, whatever task group it was raised in (meterflow/cli/common.py turns it
into one line and an exit code).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from http import HTTPStatus

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from ingest.decode import Router
from ingest.pipeline import Pipeline
from ingest.stats import Stats
from meterflow.health import Health
from meterflow.http import HttpServer, Response
from meterflow.metrics import CONTENT_TYPE, DaemonCollector, exposition, metrics_registry
from meterflow.settings import Settings
from meterflow.upkeep import Facts, Upkeep
from storage import Backoff, BatchWriter, StorageError, open_engine
from storage.backend import backend_for_url
from storage.checkpoints import checkpointer_for
from storage.engine import DAEMON_APPLICATION, durability
from storage.inuse import Holder, used_by_daemon
from storage.prices import record_rates
from storage.zones import record_zones

log = structlog.get_logger("meterflow.daemon")


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        router = Router.configured(settings.decoders, settings.ingest, settings.mqtt.topic_prefix)
        self._pipeline = Pipeline(settings.mqtt, settings.batch, router, self.stats)
        self._writer: BatchWriter | None = None
        self._upkeep: Upkeep | None = None
        self._http: HttpServer | None = None
        self._holder: Holder | None = None
        # While the writer waits for its database: a stop request ends the wait.
        self._starting: asyncio.Timeout | None = None

    @property
    def ready(self) -> bool:
        return self.health().ready

    @property
    def connected(self) -> bool:
        return self._pipeline.connected

    @property
    def http_port(self) -> int | None:
        """The port of the metrics and health endpoints, once they listen."""
        return None if self._http is None else self._http.port

    def health(self) -> Health:
        now = time.monotonic()
        threshold = self.settings.storage.unready_after_s
        writer, pipeline = self._writer, self._pipeline
        failing_since = writer.failing_since if writer else None
        last_commit = writer.last_commit_at if writer else None
        in_flight = pipeline.in_flight
        return Health(
            connected=pipeline.connected and writer is not None,
            database_ok=failing_since is None or now - failing_since < threshold,
            stalled=in_flight > 0 and now - pipeline.progress_at > threshold,
            in_flight=in_flight,
            pending=pipeline.pending,
            last_commit_age_s=None if last_commit is None else round(now - last_commit, 3),
            broker_refusal=pipeline.refusal,
        )

    def facts(self) -> Facts:
        return self._upkeep.facts if self._upkeep else Facts()

    def request_stop(self) -> None:
        """Stop reading, commit and acknowledge what was received, then return from `run`."""
        self._pipeline.request_stop()
        if self._starting is not None:
            self._starting.reschedule(asyncio.get_running_loop().time())

    async def run(self) -> None:
        """Run until `request_stop`; a storage error no retry mends is raised on its own."""
        with used_by_daemon(self.settings.storage.url) as self._holder:
            try:
                await self._run()
            except* StorageError as group:
                raise _first(group) from None
        log.info("stopped", **self.stats.summary())

    async def _run(self) -> None:
        settings = self.settings
        storage = settings.storage
        engine = open_engine(storage.url, storage.writer_sqlite, application=DAEMON_APPLICATION)
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Up before the database: /readyz says "not ready" while it is awaited.
                if settings.metrics.port is not None:
                    self._http = await stack.enter_async_context(self._endpoints())
                    if self._holder is not None:
                        self._holder.note_endpoint(self._http.url)
                writer = BatchWriter(
                    engine,
                    url=storage.url,
                    unknown_devices=settings.ingest.unknown_devices,
                    max_power_kw=settings.devices.max_power_kw,
                    backoff=Backoff(storage.retry_initial_s, storage.retry_max_s),
                    priced=settings.prices.configured,
                )
                try:
                    async with asyncio.timeout(None) as self._starting:
                        await stack.enter_async_context(writer)
                except TimeoutError:
                    if self._pipeline.stop_requested:
                        return  # asked to stop while the database was out of reach
                    raise
                finally:
                    self._starting = None
                self._writer = writer
                async with engine.connect() as conn:
                    await record_zones(conn, settings.analytics)
                    _report_rates(await record_rates(conn, settings.prices))
                    await _report_durability(conn)
                checkpointer = checkpointer_for(
                    storage.url,
                    storage.sqlite_checkpoint_interval_s,
                    storage.sqlite_busy_timeout_ms,
                    storage.key,
                )
                if checkpointer is not None:
                    await stack.enter_async_context(checkpointer)
                store = backend_for_url(storage.url).partition_store(
                    engine, storage.url, storage.sqlite
                )
                upkeep = self._upkeep = Upkeep(writer, store, settings)
                async with asyncio.TaskGroup() as tasks:
                    background = [
                        tasks.create_task(self._summarise(), name="meterflow.summary"),
                        tasks.create_task(upkeep.run(), name="meterflow.upkeep"),
                    ]
                    if checkpointer is not None:
                        background.append(
                            tasks.create_task(checkpointer.run(), name="meterflow.checkpoint")
                        )
                    await self._pipeline.run(writer)
                    for task in background:
                        task.cancel()
        finally:
            self._writer = None
            await engine.dispose()

    def _endpoints(self) -> HttpServer:
        metrics = self.settings.metrics
        registry = metrics_registry(DaemonCollector(self.stats, self.health, self.facts))

        def readyz() -> Response:
            health = self.health()
            status = HTTPStatus.OK if health.ready else HTTPStatus.SERVICE_UNAVAILABLE
            body = json.dumps(health.to_json()).encode() + b"\n"
            return Response(status, body, "application/json")

        return HttpServer(
            metrics.host,
            metrics.port or 0,
            {
                "/metrics": lambda: Response(HTTPStatus.OK, exposition(registry), CONTENT_TYPE),
                "/healthz": lambda: Response(HTTPStatus.OK, b"ok\n"),
                "/readyz": readyz,
            },
        )

    async def _summarise(self) -> None:
        interval = self.settings.log.summary_interval_s
        while True:
            await asyncio.sleep(interval)
            health = self.health()
            log.info(
                "summary",
                pending=health.pending,
                in_flight=health.in_flight,
                connected=self.connected,
                ready=health.ready,
                **self.stats.summary(),
            )


def _first(group: BaseExceptionGroup[StorageError]) -> StorageError:
    """The first storage error of a group, however deeply task groups nested it."""
    first = group.exceptions[0]
    return first if isinstance(first, StorageError) else _first(first)


def _report_rates(changed: datetime | None) -> None:
    """A tariff or carbon zone changed: what is stored keeps its cost until repriced."""
    if changed is not None:
        since = "the beginning" if changed.year == 1 else changed.isoformat()
        log.warning(
            "rates changed",
            since=since,
            fix="`meterflow costs recompute` prices the stored quarter hours again",
        )


async def _report_durability(conn: AsyncConnection) -> None:
    setting, value, durable = await durability(conn)
    if durable:
        log.info("commits reach the disk before acknowledgement", **{setting: value})
    else:
        log.warning(
            "commits are acknowledged before they reach the disk: a power cut can lose the "
            "last acknowledged readings; set storage.sqlite_synchronous = FULL",
            **{setting: value},
        )
