"""The single writer against real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import (
    Backoff,
    BatchWriter,
    DeadLetter,
    Reading,
    SQLiteOptions,
    WriteBatch,
    open_engine,
)
from tests.helpers import count_rows, query, scalar

T0 = datetime(2026, 3, 31, 23, 59, 58, tzinfo=UTC)


def reading(device: str, at: datetime, energy: float = 0.1, **extra: object) -> Reading:
    return Reading("t", device, "smart_meter", at, energy, 1.0, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def writer(db_path: Path) -> AsyncIterator[BatchWriter]:
    engine = open_engine(f"sqlite:///{db_path}", SQLiteOptions(busy_timeout_ms=100))
    async with BatchWriter(engine, backoff=Backoff(initial=0.05, cap=0.2)) as batch_writer:
        yield batch_writer
    await engine.dispose()


async def test_duplicates_in_and_across_batches_are_counted_not_stored(
    writer: BatchWriter, db_path: Path
) -> None:
    """A reading seen twice in one batch and again in the next is one row."""
    first = await writer.write(WriteBatch([reading("a", T0), reading("a", T0), reading("b", T0)]))
    again = await writer.write(WriteBatch([reading("a", T0)]))
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (again.inserted, again.duplicates) == (0, 1)
    assert count_rows(db_path) == 2


async def test_refused_reading_becomes_a_dead_letter_and_the_rest_of_its_batch_is_kept(
    writer: BatchWriter, db_path: Path
) -> None:
    """A row the database refuses (here a CHECK) is isolated; its batch-mates are stored."""
    batch = WriteBatch([reading("a", T0), reading("b", T0, energy=-1.0), reading("c", T0)])
    result = await writer.write(batch)
    assert (result.inserted, result.dead_letters) == (2, 1)
    assert sorted(device for (device,) in query(db_path, "SELECT device_id FROM energy_data")) == [
        "a",
        "c",
    ]
    reason = scalar(db_path, "SELECT reason FROM dead_letters")
    assert reason.startswith("database refused the reading: CHECK constraint failed")


async def test_locked_database_is_waited_for_and_nothing_is_dropped(
    writer: BatchWriter, db_path: Path
) -> None:
    """Another connection holding an exclusive lock past busy_timeout delays the batch only."""
    await writer.write(WriteBatch([reading("a", T0)]))
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(10)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert await asyncio.to_thread(locked.wait, 5)
    write = asyncio.create_task(writer.write(WriteBatch([reading("b", T0)])))
    await asyncio.sleep(0.6)
    assert not write.done()
    assert writer.failing_since is not None
    release.set()
    async with asyncio.timeout(10):
        result = await write
    holder.join()
    assert result.inserted == 1
    assert writer.failing_since is None
    assert count_rows(db_path) == 2


async def test_a_restarted_writer_finds_existing_partitions_and_keeps_them_in_the_view(
    db_path: Path,
) -> None:
    """Partitions created by an earlier run stay in the view when a new month is added."""
    for at in (T0, T0 + timedelta(seconds=5), T0 + timedelta(days=40)):
        engine = open_engine(f"sqlite:///{db_path}")
        async with BatchWriter(engine) as writer:
            await writer.write(WriteBatch([reading("a", at)]))
        await engine.dispose()
    assert count_rows(db_path) == 3
    months = query(
        db_path,
        "SELECT strftime('%Y-%m', recorded_at), count(*) FROM energy_data GROUP BY 1 ORDER BY 1",
    )
    assert months == [("2026-03", 1), ("2026-04", 1), ("2026-05", 1)]


async def test_dead_letters_commit_with_the_batch(writer: BatchWriter, db_path: Path) -> None:
    """Rejects arriving with readings are stored in the same transaction as the readings."""
    letter = DeadLetter("t", b"\x00\xff", "bad", T0, payload_size=9000)
    result = await writer.write(WriteBatch([reading("a", T0)], [letter]))
    assert (result.inserted, result.dead_letters) == (1, 1)
    assert query(db_path, "SELECT payload, payload_size, reason FROM dead_letters") == [
        (b"\x00\xff", 9000, "bad")
    ]
