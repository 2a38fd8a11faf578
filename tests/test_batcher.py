"""Batches flush when full or when their first message has waited long enough."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ingest.batch import Batcher
from ingest.delivery import Delivery
from storage import DeadLetter, Reading

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def item(n: int) -> tuple[list[Reading | DeadLetter], Delivery]:
    delivery = Delivery(topic="t", payload=b"", mid=n, qos=1)
    if n % 2:
        return [DeadLetter("t", b"x", "bad", NOW)], delivery
    return [Reading("t", f"d{n}", "smart_meter", NOW, 0.1, 1.0)], delivery


async def test_full_batch_is_handed_out_at_once_in_arrival_order() -> None:
    """Reaching max_messages makes a batch available without waiting for the delay."""
    batcher = Batcher(max_messages=4, max_delay_s=3600)
    for n in range(6):
        batcher.add(*item(n))
    async with asyncio.timeout(1):
        batch = await batcher.next_batch()
    assert batch is not None
    assert [d.mid for d in batch.deliveries] == [0, 1, 2, 3]
    assert (len(batch.readings), len(batch.dead_letters)) == (2, 2)
    assert batcher.pending == 2


async def test_partial_batch_waits_for_the_delay_then_flushes() -> None:
    """A batch below max_messages is handed out once its first message is max_delay old."""
    clock = [100.0]
    batcher = Batcher(max_messages=100, max_delay_s=0.05, clock=lambda: clock[0])
    batcher.add(*item(0))
    waiting = asyncio.create_task(batcher.next_batch())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    clock[0] += 0.05
    async with asyncio.timeout(1):
        batch = await waiting
    assert batch is not None
    assert batch.messages == 1


async def test_close_hands_out_the_rest_then_none() -> None:
    """After close, what is left comes out immediately, then next_batch returns None."""
    batcher = Batcher(max_messages=100, max_delay_s=3600)
    batcher.add(*item(0))
    batcher.close()
    async with asyncio.timeout(1):
        assert await batcher.next_batch() is not None
        assert await batcher.next_batch() is None


async def test_waiting_writer_wakes_when_the_first_message_arrives() -> None:
    """An idle writer is woken by the first message and flushes it after the delay."""
    batcher = Batcher(max_messages=100, max_delay_s=0.02)
    waiting = asyncio.create_task(batcher.next_batch())
    await asyncio.sleep(0.01)
    batcher.add(*item(0))
    async with asyncio.timeout(1):
        batch = await waiting
    assert batch is not None
    assert [d.mid for d in batch.deliveries] == [0]
