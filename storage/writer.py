"""The single writer: one loop, one connection, one queue of typed tasks.

Everything that uses the writer's database connection is a task on its queue
(storage/tasks.py): a batch, an upkeep transaction, partitions to create or read afresh,
a hold while partitions are maintained from outside, a stop. One loop takes them one at a
time, so the connection serves one thing at a time by construction, and nothing else
reaches into it.

One exception keeps the pipeline fast. The common batch of plain readings (`_plain`) is
queued whole to the backend (on SQLite, in aiosqlite's thread), and the loop goes on to
prepare the next batch while it commits. Transactions queued that way commit in order.
Any other task starts only once they have committed (`_settle`).

A failing task never ends the loop. Transient database errors (a locked or full
database, a lost server) are retried with backoff for as long as it takes. A batch the
database refuses outright is stored row by row, so that the one bad reading becomes a
dead letter and the rest are kept. An error no retry mends is set on the task's future,
for its submitter to handle.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Self, TypeVar, cast

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import Month
from storage.backend import Dialect, PlainBatch, backend_for
from storage.batch_transaction import plain_outcome, store_batch
from storage.counters import DEFAULT_MAX_POWER_KW, MaxPower, counter_key
from storage.devices import sightings
from storage.engine import connection
from storage.errors import DatabaseUnavailableError, WriteError, database_said
from storage.migrations import require_current
from storage.records import Reading, UnknownDevices, WriteBatch, WriteResult, by_month
from storage.retry import Backoff
from storage.tasks import (
    EnsurePartitions,
    Hold,
    ReloadPartitions,
    Settle,
    Stop,
    StoreBatch,
    Task,
    Transact,
)

T = TypeVar("T")
P = ParamSpec("P")

log = structlog.get_logger("meterflow.storage")


def _is_transient(exc: DBAPIError) -> bool:
    # A locked or full database, or a lost server connection, heals by itself; anything
    # else is a statement the database will refuse however often it is sent.
    return isinstance(exc, OperationalError) or exc.connection_invalidated


@dataclass(slots=True)
class _Queued:
    """A plain batch whose transaction is queued to the backend and not yet settled."""

    task: StoreBatch
    committing: asyncio.Future[int]
    # The partitions created for it (`_plain_into_partitions`), for its result to name.
    created: Sequence[str] = ()


class BatchWriter:
    """Owns the database connection; stores `WriteBatch`es in order, and runs upkeep's
    transactions between them.

    What it shows of itself, for health checks: `last_commit_at` and `failing_since`
    (`time.monotonic`), and `months`, the partitions it knows.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        url: str = "",
        unknown_devices: UnknownDevices = "register",
        max_power_kw: MaxPower = DEFAULT_MAX_POWER_KW,
        backoff: Backoff | None = None,
        priced: bool = False,
    ) -> None:
        self._engine = engine
        self._url = url
        self._unknown_devices = unknown_devices
        self._max_power_kw = max_power_kw
        self._backoff = backoff or Backoff()
        self._backend: Dialect = backend_for(engine.dialect.name, priced=priced)
        self._conn: AsyncConnection | None = None
        self._tasks: asyncio.Queue[Task] = asyncio.Queue()
        self._queued: deque[_Queued] = deque()
        self._loop: asyncio.Task[None] | None = None
        self.last_commit_at: float | None = None
        self.failing_since: float | None = None
        # Set when the partitions this writer knows may be out of date: after a failure,
        # or after partition maintenance. The next transaction reads them afresh.
        self._stale_partitions = False

    async def __aenter__(self) -> Self:
        await self._connect()
        self._loop = asyncio.create_task(self._run(), name="meterflow.writer")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            if exc_type is None:
                # A clean exit: what was submitted before commits first.
                self._tasks.put_nowait(Stop())
            else:
                loop.cancel()
            try:
                await loop
            except asyncio.CancelledError:
                if exc_type is None:
                    raise
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def months(self) -> frozenset[Month]:
        """The months the writer knows partitions for."""
        return self._backend.partitions.months

    # What the writer offers: each call puts a task on the queue.

    async def submit(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Queue the batch; the future gives its result once it has committed.

        Batches commit in the order they were submitted.
        """
        done: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._put(StoreBatch(batch, done))
        return done

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Store the batch in one transaction; return once it has committed."""
        return await (await self.submit(batch))

    async def transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in a transaction on the writer's connection, between two batches.

        For upkeep (device status) that must not race the batches: SQLite has one
        writer, and this is it. Transient failures are retried like a batch's.
        """
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(Transact(work, done))
        return cast("T", await done)

    async def create_ahead(self, months_ahead: int) -> list[str]:
        """Create the partitions of this month and the next `months_ahead`; return new names."""
        month = Month.of(datetime.now(UTC))
        wanted = [month]
        for _ in range(months_ahead):
            month = month.next()
            wanted.append(month)
        return await self.ensure_partitions(wanted)

    async def ensure_partitions(self, months: Iterable[Month]) -> list[str]:
        """Create the partitions of `months` that are missing; return their table names."""
        done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._put(EnsurePartitions(tuple(months), done))
        return await done

    async def reload_partitions(self) -> frozenset[Month]:
        """Read the partitions afresh; return the months they cover."""
        done: asyncio.Future[frozenset[Month]] = asyncio.get_running_loop().create_future()
        self._put(ReloadPartitions(done))
        return await done

    async def stray_rows(self) -> int:
        """Readings outside any monthly partition (PostgreSQL DEFAULT partition)."""
        return await self.transaction(self._backend.stray_rows)

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold batches back while partitions are maintained from outside the writer."""
        hold = Hold(asyncio.get_running_loop().create_future(), asyncio.Event())
        self._put(hold)
        try:
            await hold.held
            yield
        finally:
            hold.release.set()

    def _put(self, task: Task) -> None:
        if self._loop is None or self._loop.done():
            raise RuntimeError("BatchWriter used outside its `async with`")
        self._tasks.put_nowait(task)

    # The loop.

    async def _run(self) -> None:
        while True:
            task = await self._tasks.get()
            if isinstance(task, Stop):
                await self._settle()
                return
            try:
                await self._handle(task)
            except Exception as exc:
                log.exception("writer task failed", task=type(task).__name__)
                _fail(task, exc)

    async def _handle(self, task: Task) -> None:
        match task:
            case StoreBatch():
                await self._store(task)
            case Settle():
                await self._settle()
            case Transact(work=work, done=done):
                await self._settle()
                await _finish(done, self._transaction, work)
            case EnsurePartitions(months=months, done=done):
                await self._settle()
                await _finish(done, self._ensure, months)
            case ReloadPartitions(done=done):
                await self._settle()
                await _finish(done, self._reloaded)
            case Hold(held=held, release=release):
                await self._settle()
                if not held.done():
                    held.set_result(None)
                await release.wait()
                await self._reload_partitions()

    async def _store(self, task: StoreBatch) -> None:
        if task.done.done():
            return  # its submitter gave up on it (the broker went away)
        batch = task.batch
        months, created = await self._plain_into_partitions(batch)
        if months is not None:
            committing = await self._queue_plain(batch, months)
            if committing is not None:
                queued = _Queued(task, committing, created)
                self._queued.append(queued)
                committing.add_done_callback(lambda _: self._committed(queued))
                return
        await self._settle()
        await _finish(task.done, self._write, batch)

    def _committed(self, queued: _Queued) -> None:
        """A queued plain batch has committed, or failed: the loop takes failures over."""
        if _failed(queued.committing):
            self._tasks.put_nowait(Settle())
        else:
            self._resolve(queued)

    def _resolve(self, queued: _Queued) -> None:
        if queued in self._queued:
            self._queued.remove(queued)
            self._succeeded()
            done = queued.task.done
            if not done.done():
                done.set_result(
                    plain_outcome(queued.task.batch, queued.committing.result(), queued.created)
                )

    async def _settle(self) -> None:
        """Wait for every queued plain batch; take over, in order, those that failed."""
        if not self._queued:
            return
        await asyncio.wait([q.committing for q in self._queued])
        while self._queued:
            queued = self._queued[0]
            if not _failed(queued.committing):
                self._resolve(queued)
                continue
            self._queued.popleft()
            error = None if queued.committing.cancelled() else queued.committing.exception()
            if isinstance(error, DBAPIError):
                await self._failed_plain(error)
            # Retried, or stored row by row, as any batch would be.
            await _finish(queued.task.done, self._write, queued.task.batch)

    async def _queue_plain(
        self, batch: WriteBatch, months: Mapping[Month, Sequence[Reading]]
    ) -> asyncio.Future[int] | None:
        try:
            conn = self._conn or await self._connect()
            return await self._store_plain(conn, batch, months)
        except DBAPIError as exc:
            await self._failed_plain(exc)
            return None

    async def _store_plain(
        self, conn: AsyncConnection, batch: WriteBatch, months: Mapping[Month, Sequence[Reading]]
    ) -> asyncio.Future[int]:
        plain = PlainBatch(months, sightings(batch.readings), datetime.now(UTC))
        return await self._backend.store_readings(conn, plain)

    async def _write(self, batch: WriteBatch) -> WriteResult:
        attempt = 0
        while True:
            try:
                conn = self._conn or await self._connect()
                try:
                    result = await self._write_once(conn, batch, isolate=False)
                except IntegrityError:
                    # A month detached or dropped behind our back looks like a refused
                    # row on PostgreSQL; with the partitions read afresh it is created.
                    self._stale_partitions = True
                    try:
                        result = await self._write_once(conn, batch, isolate=False)
                    except IntegrityError as exc:
                        log.warning("batch refused, storing it row by row", error=str(exc.orig))
                        result = await self._write_once(conn, batch, isolate=True)
            except DBAPIError as exc:
                if not _is_transient(exc):
                    raise WriteError(
                        f"a batch could not be stored: {database_said(exc.orig)}"
                    ) from exc
                await self._recover(exc, attempt)
                attempt += 1
                continue
            self._succeeded()
            return result

    async def _write_once(
        self, conn: AsyncConnection, batch: WriteBatch, *, isolate: bool
    ) -> WriteResult:
        months = None if isolate else self._plain(batch)
        if months is not None and months.keys() <= self.months:
            return plain_outcome(batch, await (await self._store_plain(conn, batch, months)))
        # Read afresh within the batch's transaction; a failure marks them stale again.
        stale, self._stale_partitions = self._stale_partitions, False
        return await store_batch(
            conn,
            self._backend,
            batch,
            unknown_devices=self._unknown_devices,
            max_power_kw=self._max_power_kw,
            isolate=isolate,
            load_partitions=stale,
        )

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                conn = self._conn or await self._connect()
                async with conn.begin():
                    return await work(conn)
            except DBAPIError as exc:
                if not _is_transient(exc):
                    raise WriteError(f"upkeep failed: {database_said(exc.orig)}") from exc
                await self._recover(exc, attempt)
                attempt += 1

    async def _ensure(self, months: Sequence[Month]) -> list[str]:
        async def ensure(conn: AsyncConnection) -> list[Month]:
            return await self._backend.partitions.ensure(conn, months)

        created = await self._transaction(ensure)
        self._backend.partitions.confirm(created)
        return [m.table_name for m in created]

    async def _reloaded(self) -> frozenset[Month]:
        await self._reload_partitions()
        return self.months

    async def _reload_partitions(self) -> None:
        try:
            conn = self._conn or await self._connect()
            async with conn.begin():
                await self._backend.partitions.load(conn)
        except DBAPIError:
            # The next batch reads them instead.
            self._stale_partitions = True

    def _plain(self, batch: WriteBatch) -> dict[Month, list[Reading]] | None:
        """The batch's readings by month, if it is the common batch the backend stores in
        its cheapest way once their partitions exist: readings alone, with no counter or
        registration to consult. None for any other."""
        if (
            batch.dead_letters
            or batch.availability
            or self._stale_partitions
            or self._unknown_devices == "reject"
            or any(counter_key(r) is not None for r in batch.readings)
        ):
            return None
        return by_month(batch.readings)

    async def _plain_into_partitions(
        self, batch: WriteBatch
    ) -> tuple[dict[Month, list[Reading]] | None, list[str]]:
        """`_plain`'s months, with the partitions missing among them created first, in a
        transaction of their own as `ensure_partitions` creates them, and the names of
        those created: a batch reaching into new months (a month's first readings,
        history) then takes the cheap way too."""
        months = self._plain(batch)
        if months is None or months.keys() <= self.months:
            return months, []
        await self._settle()
        try:
            return months, await self._ensure(sorted(months.keys() - self.months))
        except WriteError:
            return None, []  # the batch's own transaction meets the error, and says it

    async def _connect(self) -> AsyncConnection:
        """The writer's connection, waiting with backoff while the database is out of reach
        (the daemon is not ready meanwhile)."""
        attempt = 0
        while True:
            try:
                conn = await connection(self._engine)
                break
            except DatabaseUnavailableError as exc:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                delay = self._backoff.delay(attempt)
                log.warning("database unavailable, retrying", error=str(exc), delay_s=delay)
                await asyncio.sleep(delay)
                attempt += 1
        if attempt:
            log.info("database reachable again")
            self.failing_since = None
        try:
            await require_current(conn, self._backend, self._url)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    def _succeeded(self) -> None:
        self.last_commit_at = time.monotonic()
        self.failing_since = None

    async def _failed_plain(self, exc: DBAPIError) -> None:
        """A plain batch failed: back off if the cause heals by itself. The general path
        takes the batch over, and isolates the reading a refusal was about."""
        if _is_transient(exc):
            await self._recover(exc, 0)

    async def _recover(self, exc: DBAPIError, attempt: int) -> None:
        self._stale_partitions = True
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        delay = self._backoff.delay(attempt)
        log.warning(
            "commit failed, retrying", error=database_said(exc.orig), attempt=attempt, delay_s=delay
        )
        if exc.connection_invalidated and self._conn is not None:
            await self._conn.close()
            self._conn = None
        await asyncio.sleep(delay)


async def _finish(
    done: asyncio.Future[T],
    job: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> None:
    """Run `job` unless its submitter has given up; its result or error goes to `done`."""
    if done.done():
        return
    try:
        result = await job(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001  (the submitter handles it, not the loop)
        if not done.done():
            done.set_exception(exc)
        return
    if not done.done():
        done.set_result(result)


def _failed(committing: asyncio.Future[int]) -> bool:
    return committing.cancelled() or committing.exception() is not None


def _fail(task: Task, exc: Exception) -> None:
    """Give a task's submitter the error its handling raised."""
    match task:
        case (
            StoreBatch(done=done)
            | Transact(done=done)
            | EnsurePartitions(done=done)
            | ReloadPartitions(done=done)
            | Hold(held=done)
        ) if not done.done():
            done.set_exception(exc)
