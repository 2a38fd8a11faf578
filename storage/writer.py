"""The single writer: one connection, one transaction per batch, retried until it commits."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Literal, Self, TypeVar

import structlog
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import Month, Partitions
from storage import registry
from storage.backend import Backend, backend_for
from storage.counters import apply_counters, counter_key, load_counters, save_counters
from storage.devices import sightings
from storage.errors import WriteError, database_said
from storage.faults import crash_point
from storage.migrations import require_current
from storage.records import (
    DeadLetter,
    Reading,
    WriteBatch,
    WriteResult,
    by_month,
)
from storage.rejections import (
    dead_letter_row,
    split_registered,
    unregistered_reading,
    unregistered_status,
)
from storage.retry import Backoff
from storage.tables import dead_letters

UnknownDevices = Literal["register", "reject"]
T = TypeVar("T")

log = structlog.get_logger("meterflow.storage")


def _is_transient(exc: DBAPIError) -> bool:
    # A locked or full database, or a lost server connection, heals by itself; anything
    # else is a statement the database will refuse however often it is sent.
    return isinstance(exc, OperationalError) or exc.connection_invalidated


class BatchWriter:
    """Owns the database connection and stores `WriteBatch`es in order.

    `write` returns only once the batch has committed: transient failures are retried with
    backoff for as long as it takes, and a batch the database refuses outright is stored
    row by row so that the one bad reading becomes a dead letter and the rest are kept.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        url: str = "",
        unknown_devices: UnknownDevices = "register",
        backoff: Backoff | None = None,
    ) -> None:
        self._engine = engine
        self._url = url
        self._unknown_devices = unknown_devices
        self._backoff = backoff or Backoff()
        self._backend = backend_for(engine.dialect.name)
        self._conn: AsyncConnection | None = None
        # The connection serves one transaction at a time: batches and partition upkeep
        # (called from different tasks) take turns. Plain batches may be queued behind
        # one another (`submit`); whoever takes the turn waits for those first.
        self._turn = asyncio.Lock()
        self._queued: set[asyncio.Future[int]] = set()
        self.last_commit_at: float | None = None
        self.failing_since: float | None = None
        # Set when the partitions this writer knows may be out of date: after a failure,
        # or after partition maintenance. The next transaction reads them afresh.
        self._stale_partitions = False

    async def __aenter__(self) -> Self:
        await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._settle()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def partitions(self) -> Partitions:
        return self._backend.partitions

    @property
    def backend(self) -> Backend:
        return self._backend

    async def _connect(self) -> AsyncConnection:
        conn = await self._engine.connect()
        try:
            await require_current(conn, self._backend, self._url)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in a transaction on the writer's connection, between two batches.

        For upkeep (partitions, device status) that must not race the batches: SQLite
        has one writer, and this is it. Transient failures are retried like a batch's.
        """
        async with self._exclusive():
            return await self._transaction(work)

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

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold batches back while partitions are maintained from outside the writer."""
        async with self._exclusive():
            try:
                yield
            finally:
                await self._reload_partitions()

    async def _reload_partitions(self) -> None:
        try:
            conn = self._conn or await self._connect()
            async with conn.begin():
                await self._backend.partitions.load(conn)
        except DBAPIError:
            # The next batch reads them instead.
            self._stale_partitions = True

    async def stray_rows(self) -> int:
        """Readings outside any monthly partition (PostgreSQL DEFAULT partition)."""
        return await self.transaction(self._backend.stray_rows)

    async def create_ahead(self, months_ahead: int) -> list[str]:
        """Create the partitions of this month and the next `months_ahead`; return new names."""
        month = Month.of(datetime.now(UTC))
        wanted = [month]
        for _ in range(months_ahead):
            month = month.next()
            wanted.append(month)
        async with self._exclusive():
            return await self._create(wanted)

    async def _create(self, wanted: list[Month]) -> list[str]:
        async def ensure(conn: AsyncConnection) -> list[Month]:
            return await self._backend.partitions.ensure(conn, wanted)

        created = await self._transaction(ensure)
        self._backend.partitions.confirm(created)
        return [m.table_name for m in created]

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """The connection to oneself, once the plain batches queued on it have committed."""
        async with self._turn:
            await self._settle()
            yield

    async def _settle(self) -> None:
        if self._queued:
            # Their outcomes are their submitters' to handle.
            await asyncio.wait(self._queued)

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Store the batch in one transaction; return once it has committed."""
        return await (await self.submit(batch))

    async def submit(self, batch: WriteBatch) -> asyncio.Future[WriteResult]:
        """Start storing the batch; the future gives its result once it has committed.

        A batch of plain readings (see `_plain`) is queued behind those before it, so that
        the next can be prepared while it commits; transactions commit in the order they
        were queued. Any other batch starts once the queued ones have committed, and is
        stored before this returns.
        """
        async with self._turn:
            months = self._plain(batch)
            if months is not None:
                queued = await self._queue_plain(batch, months)
                if queued is not None:
                    return asyncio.ensure_future(self._plain_result(batch, queued))
            await self._settle()
            done = asyncio.get_running_loop().create_future()
            done.set_result(await self._write(batch))
            return done

    async def _queue_plain(
        self, batch: WriteBatch, months: Mapping[Month, Sequence[Reading]]
    ) -> asyncio.Future[int] | None:
        try:
            conn = self._conn or await self._connect()
            queued = await self._store_plain(conn, batch, months)
        except DBAPIError as exc:
            await self._failed_plain(exc)
            return None
        self._queued.add(queued)
        queued.add_done_callback(self._queued.discard)
        return queued

    async def _plain_result(self, batch: WriteBatch, queued: asyncio.Future[int]) -> WriteResult:
        try:
            inserted = await queued
        except DBAPIError as exc:
            # Retried, or stored row by row, as any batch would be; after the batches
            # queued with it, so the connection is its own again.
            async with self._exclusive():
                await self._failed_plain(exc)
                return await self._write(batch)
        self.last_commit_at = time.monotonic()
        self.failing_since = None
        return _plain_outcome(batch, inserted)

    async def _store_plain(
        self, conn: AsyncConnection, batch: WriteBatch, months: Mapping[Month, Sequence[Reading]]
    ) -> asyncio.Future[int]:
        seen = sightings(batch.readings)
        return await self._backend.store_readings(conn, months, seen, datetime.now(UTC))

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
            self.last_commit_at = time.monotonic()
            self.failing_since = None
            return result

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
        log.warning("commit failed, retrying", error=str(exc.orig), attempt=attempt, delay_s=delay)
        if exc.connection_invalidated and self._conn is not None:
            await self._conn.close()
            self._conn = None
        await asyncio.sleep(delay)

    def _plain(self, batch: WriteBatch) -> dict[Month, list[Reading]] | None:
        """The batch's readings by month, if it is the common batch the backend stores in
        its cheapest way: readings alone, into known partitions, with no counter or
        registration to consult. None for any other."""
        if (
            batch.dead_letters
            or batch.availability
            or self._stale_partitions
            or self._unknown_devices == "reject"
            or any(counter_key(r) is not None for r in batch.readings)
        ):
            return None
        months = by_month(batch.readings)
        return months if months.keys() <= self._backend.partitions.months else None

    async def _write_once(
        self, conn: AsyncConnection, batch: WriteBatch, *, isolate: bool
    ) -> WriteResult:
        months = None if isolate else self._plain(batch)
        if months is not None:
            return _plain_outcome(batch, await (await self._store_plain(conn, batch, months)))
        now = datetime.now(UTC)
        readings = list(batch.readings)
        rejected = list(batch.dead_letters)
        async with conn.begin():
            backend = self._backend
            if self._stale_partitions:
                await backend.partitions.load(conn)
                self._stale_partitions = False
            registered = await backend.registered_owners(
                conn, sorted({r.device_id for r in readings})
            )
            if self._unknown_devices == "reject":
                readings, unknown = split_registered(readings, registered)
                rejected.extend(unregistered_reading(r, now) for r in unknown)
            readings = await _with_counters(conn, readings, now)
            created = await backend.partitions.ensure(conn, by_month(readings).keys())
            await backend.upsert_devices(conn, sightings(readings), now)
            unknown_statuses = await registry.apply_availability(
                conn,
                batch.availability,
                now,
                register_unknown=self._unknown_devices == "register",
            )
            rejected.extend(unregistered_status(a) for a in unknown_statuses)
            refused: list[DeadLetter] = []
            if isolate:
                inserted, refused = await self._insert_each(conn, readings, now)
                rejected.extend(refused)
            else:
                inserted = await backend.insert_readings(conn, readings, now)
            if rejected:
                await conn.execute(insert(dead_letters), [dead_letter_row(d) for d in rejected])
            crash_point("during-commit")
        backend.partitions.confirm(created)
        return WriteResult(
            inserted=inserted,
            duplicates=len(readings) - inserted - len(refused),
            dead_letters=len(rejected),
            created_partitions=tuple(m.table_name for m in created),
            rejected=Counter(d.kind for d in rejected),
            statuses=len(batch.availability) - len(unknown_statuses),
        )

    async def _insert_each(
        self,
        conn: AsyncConnection,
        readings: Sequence[Reading],
        now: datetime,
    ) -> tuple[int, list[DeadLetter]]:
        inserted = 0
        refused: list[DeadLetter] = []
        for reading in readings:
            try:
                async with conn.begin_nested():
                    inserted += await self._backend.insert_readings(conn, [reading], now)
            except IntegrityError as exc:
                reason = f"database refused the reading: {exc.orig}"
                refused.append(
                    DeadLetter(
                        reading.topic, reading.to_payload(), reason, received_at=now, kind="refused"
                    )
                )
        return inserted, refused


def _plain_outcome(batch: WriteBatch, inserted: int) -> WriteResult:
    return WriteResult(inserted=inserted, duplicates=len(batch.readings) - inserted, dead_letters=0)


async def _with_counters(
    conn: AsyncConnection, readings: list[Reading], now: datetime
) -> list[Reading]:
    keys = sorted({key for r in readings if (key := counter_key(r)) is not None})
    if not keys:
        return readings
    states = await load_counters(conn, keys)
    before = dict(states)
    counted = apply_counters(readings, states)
    await save_counters(conn, {k: v for k, v in states.items() if before.get(k) != v}, now)
    return counted
