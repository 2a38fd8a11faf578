"""Periodic publishes for device families that send only while asked: Victron's GX devices
(Venus OS >= 3.20, dbus-flashmq) publish nothing until a client publishes to
R/<portal id>/keepalive, and stop 60 s after the last one (victronenergy/dbus-flashmq,
README.md, "Keep-alive")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.helpers import make_settings, running_daemon
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

TOPIC = "R/c0619ab1b2c3/keepalive"
PAYLOAD = '{ "keepalive-options" : ["suppress-republish"] }'


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_keepalives_go_out_every_interval_while_connected_and_stop_with_the_daemon(
    broker: Mosquitto, db_path: Path, prefix: str, protocol: str
) -> None:
    every = [{"topic": TOPIC, "payload": PAYLOAD, "interval_s": 0.2}]
    settings = make_settings(
        broker.url, db_path, prefix, **{"mqtt.publish_every": every, "mqtt.protocol": protocol}
    )
    seen: list[tuple[float, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
        await watcher.subscribe("R/+/keepalive")

        async def watch() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                seen.append((time.monotonic(), message.payload))

        watching = asyncio.create_task(watch())
        async with running_daemon(settings):
            await asyncio.sleep(1.1)
        stopped = time.monotonic()
        await asyncio.sleep(0.6)
        watching.cancel()
    assert 4 <= len(seen) <= 8
    assert {payload for _, payload in seen} == {PAYLOAD.encode()}
    assert all(at < stopped + 0.05 for at, _ in seen)
