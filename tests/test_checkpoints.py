"""SQLite checkpoints beside the writer: the write-ahead log stays short, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage import BatchWriter, Reading, SQLiteOptions, WriteBatch, open_engine
from storage.checkpoints import WRITER_CHECKPOINT_PAGES, Checkpointer
from tests.databases import SQLiteDatabase, count_readings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
BATCHES, DEVICES, PER_DEVICE = 12, 200, 3


def batch(number: int) -> WriteBatch:
    first = T0 + timedelta(minutes=PER_DEVICE * number)
    return WriteBatch(
        [
            Reading("t", f"m-{device:03d}", "smart_meter", first + timedelta(minutes=k), 0.1, 1.0)
            for device in range(DEVICES)
            for k in range(PER_DEVICE)
        ]
    )


async def write_all(database: SQLiteDatabase, *, checkpoint_every_s: float | None) -> int:
    """Write every batch as the daemon's writer would; the log's size at the end, in bytes."""
    options = SQLiteOptions(wal_autocheckpoint_pages=WRITER_CHECKPOINT_PAGES)
    engine = open_engine(database.url, options)
    async with BatchWriter(engine, url=database.url) as writer:
        await writer.write(batch(0))
        every = checkpoint_every_s or 3600
        async with Checkpointer(database.path, every, 1000, None) as checkpointer:
            checkpoints = asyncio.create_task(checkpointer.run())
            for number in range(1, BATCHES):
                await writer.write(batch(number))
                if checkpoint_every_s is not None:
                    # The checkpointer's clock, not a condition: let a round pass.
                    await asyncio.sleep(2 * checkpoint_every_s)
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            if checkpoint_every_s is not None:
                assert checkpointer.checkpoints >= BATCHES - 1
        size = database.path.with_name(database.path.name + "-wal").stat().st_size
    await engine.dispose()
    return size


async def test_the_checkpointer_keeps_the_log_short_and_every_reading_is_kept(
    tmp_path: Path,
) -> None:
    """With the writer's own checkpoint far off, the checkpointer's keep the log to about a
    batch: the writer's next transaction starts it again once every page is copied."""
    checkpointed = SQLiteDatabase(tmp_path / "checkpointed" / "meterflow.db")
    left_alone = SQLiteDatabase(tmp_path / "left-alone" / "meterflow.db")
    short = await write_all(checkpointed, checkpoint_every_s=0.05)
    long = await write_all(left_alone, checkpoint_every_s=None)
    assert short * 4 < long
    assert count_readings(checkpointed) == count_readings(left_alone) == BATCHES * DEVICES * 3
