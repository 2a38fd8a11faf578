"""SQLite checkpoints beside the writer, so that no batch's commit pays for one.

In WAL mode a commit appends pages to the write-ahead log, and the connection whose commit
takes the log past `wal_autocheckpoint` pages copies the log into the database before that
commit returns: for the daemon's writer, a long stall every few batches (docs/performance.md
has the figures). A PASSIVE checkpoint from a connection of its own takes no lock the
writer needs, runs on the other core, and once it has copied every page, the writer's next
transaction starts the log again from its beginning. The writer keeps an automatic
checkpoint at a much longer log (`WRITER_CHECKPOINT_PAGES`), should this one stall.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Self

import structlog

from storage import cipher
from storage.engine import sqlite_file, sqlite_path

log = structlog.get_logger("meterflow.storage")

# The writer's own automatic checkpoint, a safety net: four times the log one second of
# writing at 40,000 readings/s leaves.
WRITER_CHECKPOINT_PAGES = 40_000


def checkpointer_for(
    url: str, interval_s: float, busy_timeout_ms: int, key: str | None
) -> Checkpointer | None:
    """The checkpointer a daemon writing to `url` runs beside its writer; None on
    PostgreSQL, which checkpoints by itself."""
    if sqlite_path(url) is None:
        return None
    return Checkpointer(sqlite_file(url, "checkpoints"), interval_s, busy_timeout_ms, key)


class Checkpointer:
    """Copies the write-ahead log into the database every `interval_s`, from a thread."""

    def __init__(
        self, path: Path, interval_s: float, busy_timeout_ms: int, key: str | None
    ) -> None:
        self._path = path
        self._key = key
        self._interval_s = interval_s
        self._busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        self.checkpoints = 0

    async def __aenter__(self) -> Self:
        self._db = await asyncio.to_thread(self._connect)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        # Used by one task at a time, from whichever executor thread runs the checkpoint.
        db = cipher.connect(self._path, self._key, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        return db

    async def run(self) -> None:
        """Checkpoint for ever; a failed round is logged, and the next one tried."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.checkpoint()
            except cipher.Error as exc:
                log.warning("checkpoint failed", error=str(exc))

    async def checkpoint(self) -> None:
        """Copy into the database what of the log no reader still needs."""
        await asyncio.to_thread(self._checkpoint)
        self.checkpoints += 1

    def _checkpoint(self) -> None:
        if self._db is None:
            raise RuntimeError("Checkpointer used outside its `async with`")
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
