"""Acknowledging: a batch's messages are acked once its commit is done, batches in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from ingest.batch import Batch
from ingest.source import Source
from ingest.stats import Stats
from storage import WriteResult
from storage.faults import crash_point

log = structlog.get_logger("meterflow.pipeline")


class Acknowledger:
    """Follows each submitted batch to its commit, then acknowledges its messages.

    Acknowledgements go out in the order batches were submitted: a batch's messages are
    acked only once the batch before it has been. Each follow-up runs in the connection's
    task group, so a batch that cannot be stored ends the connection at once.
    """

    def __init__(
        self,
        source: Source,
        stats: Stats,
        tasks: asyncio.TaskGroup,
        on_commit: Callable[[], None],
    ) -> None:
        self._source = source
        self._stats = stats
        self._tasks = tasks
        self._on_commit = on_commit
        self._previous: asyncio.Task[None] | None = None

    async def follow(
        self, batch: Batch, committing: asyncio.Future[WriteResult], started: float
    ) -> None:
        """Ack `batch` once `committing` is done; returns once the batch before is acked.

        Waiting for the batch before keeps at most two batches in flight: one committing,
        the next queued behind it. `started` is when the batch was submitted
        (`time.perf_counter`), for the commit-time histogram.
        """
        await self.drain()
        self._previous = self._tasks.create_task(
            self._acknowledge(batch, committing, started), name="meterflow.ack"
        )

    async def drain(self) -> None:
        """Return once every batch followed so far is acknowledged."""
        if self._previous is not None:
            await self._previous

    async def _acknowledge(
        self, batch: Batch, committing: asyncio.Future[WriteResult], started: float
    ) -> None:
        result = await committing
        self._on_commit()
        now = time.time()
        self._stats.committed(
            result,
            batch.messages,
            time.perf_counter() - started,
            (now - r.recorded_at.timestamp() for r in batch.readings),
        )
        for name in result.created_partitions:
            log.info("partition created", partition=name)
        crash_point("after-commit")
        self._source.ack(batch.deliveries)
