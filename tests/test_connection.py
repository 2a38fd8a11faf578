"""The subscriber connection against a real Mosquitto: acknowledgement and flow control."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from ingest.delivery import Delivery
from ingest.source.connection import Connection
from meterflow.publisher import Publisher
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt


async def open_connection(broker: Mosquitto, client_id: str, window: int) -> Connection:
    connection = await Connection.open(
        "127.0.0.1",
        broker.port,
        client_id=client_id,
        keepalive=30,
        session_expiry=300,
        receive_maximum=window,
    )
    try:
        await connection.subscribe(f"{client_id}/#")
    except BaseException:
        await connection.close()
        raise
    return connection


async def take_for(connection: Connection, seconds: float) -> list[Delivery]:
    """Everything that arrives within `seconds`."""
    taken: list[Delivery] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                taken += await connection.take()
    return taken


async def publish(broker: Mosquitto, topic: str, count: int, size: int = 500) -> None:
    with Publisher("127.0.0.1", broker.port) as publisher:
        for number in range(count):
            publisher.publish(topic, str(number).encode().ljust(size, b" "))
        await asyncio.to_thread(publisher.wait_acknowledged)


async def test_reading_stops_at_the_window_even_when_the_broker_sends_more(
    broker: Mosquitto,
) -> None:
    """Unacknowledged messages stay near the window though Mosquitto overshoots it on acks."""
    client_id = f"flow-{uuid.uuid4().hex[:8]}"
    connection = await open_connection(broker, client_id, window=100)
    try:
        await publish(broker, f"{client_id}/m", 3000)
        first = await take_for(connection, 0.5)
        assert len(first) == 100
        # Mosquitto 2.0.11 answers each of these 50 PUBACKs with up to a window of new
        # messages; without pausing the socket we would hold all 3000.
        connection.ack(first[:50])
        more = await take_for(connection, 1.0)
        assert len(more) == 50
        assert connection.unacked == 100
        everything = first + more
        connection.ack(everything[50:])
        while len(everything) < 3000:
            batch = await take_for(connection, 0.5)
            assert batch, "the broker stopped delivering the backlog"
            connection.ack(batch)
            everything += batch
        assert [int(d.payload) for d in everything] == list(range(3000))
    finally:
        await connection.close()


async def test_unacknowledged_messages_come_back_on_the_next_connection(
    broker: Mosquitto,
) -> None:
    """What was received but not acknowledged is redelivered to the resumed session."""
    client_id = f"redeliver-{uuid.uuid4().hex[:8]}"
    connection = await open_connection(broker, client_id, window=1000)
    await publish(broker, f"{client_id}/m", 20, size=10)
    received = await take_for(connection, 0.5)
    connection.ack(received[:5])
    await connection.close()

    again = await open_connection(broker, client_id, window=1000)
    try:
        redelivered = await take_for(again, 0.5)
        again.ack(redelivered)
    finally:
        await again.close()
    assert [int(d.payload) for d in redelivered] == list(range(5, 20))


async def test_subscribe_completes_behind_a_full_window_of_redelivered_messages(
    broker: Mosquitto,
) -> None:
    """A resumed session floods the window before SUBACK; the SUBACK is still read."""
    client_id = f"backlog-{uuid.uuid4().hex[:8]}"
    await (await open_connection(broker, client_id, window=50)).close()
    await publish(broker, f"{client_id}/m", 400, size=10)
    connection = await open_connection(broker, client_id, window=50)
    try:
        first = await take_for(connection, 0.5)
        assert len(first) == 50
        connection.ack(first)
        assert len(await take_for(connection, 0.5)) == 50
    finally:
        await connection.close()
