"""Devices turn inactive when they fall silent and active again when they publish."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from structlog.testing import capture_logs

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from tests.databases import Database
from tests.helpers import make_settings, payload, running_daemon, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt


def _status(database: Database, device_id: str) -> str | None:
    rows = database.query(f"SELECT status FROM iot_devices WHERE device_id = '{device_id}'")
    return rows[0][0] if rows else None


async def test_a_silent_device_turns_inactive_and_back_active_on_its_next_reading(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """Silent for interval times factor: inactive, logged and counted; its next reading: active."""
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    settings = make_settings(
        broker.url,
        database.url,
        prefix,
        **{
            "devices.expected_interval_s": {"smart_meter": 0.5},
            "devices.offline_factor": 2,
            "devices.check_interval_s": 0.1,
        },
    )
    with capture_logs() as logs:
        async with running_daemon(settings) as daemon:
            publisher.publish(topic, payload("m-1", datetime.now(UTC)))
            await asyncio.to_thread(publisher.wait_acknowledged)
            await wait_until(lambda: daemon.stats.stored == 1, what="the first reading")
            assert _status(database, "m-1") == "active"
            await wait_until(lambda: _status(database, "m-1") == "inactive", what="inactive")
            await wait_until(lambda: daemon.facts().went_inactive == 1, what="the flip counted")
            assert daemon.facts().devices == {"inactive": 1}
            publisher.publish(topic, payload("m-1", datetime.now(UTC)))
            await asyncio.to_thread(publisher.wait_acknowledged)
            await wait_until(lambda: _status(database, "m-1") == "active", what="active again")
            await wait_until(lambda: daemon.facts().came_back == 1, what="the return counted")
    events = [(e["event"], e.get("device_id")) for e in logs if e["event"].startswith("device")]
    assert events[:2] == [("device inactive", "m-1"), ("device active again", "m-1")]
    assert next(e for e in logs if e["event"] == "device inactive")["cause"] == "silent"


def _device_with_a_last_will(port: int, status_topic: str) -> paho.Client:
    """A device connection whose last will, retained, says it is offline."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=paho.MQTTv5)
    client.will_set(status_topic, b"offline", qos=1, retain=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(status_topic, b"online", qos=1, retain=True).wait_for_publish(5)
    return client


async def test_a_devices_last_will_marks_it_inactive_and_its_online_message_active(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """The broker publishing a dead device's will sets it inactive; `online` sets it active."""
    scheme = TopicScheme(prefix)
    status_topic = scheme.status("solar_panel", "pv-7")
    settings = make_settings(broker.url, database.url, prefix)
    async with running_daemon(settings) as daemon:
        device = await asyncio.to_thread(_device_with_a_last_will, broker.port, status_topic)
        await wait_until(lambda: _status(database, "pv-7") == "active", what="registered online")
        # Dying without DISCONNECT: the broker publishes the will.
        connection = device.socket()
        assert isinstance(connection, socket.socket)
        connection.shutdown(socket.SHUT_RDWR)
        device.loop_stop()
        await wait_until(lambda: _status(database, "pv-7") == "inactive", what="the last will")
        publisher.publish(status_topic, b"Online")
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: _status(database, "pv-7") == "active", what="online again")
        # The row is visible a moment before the daemon counts the batch it committed.
        await wait_until(lambda: daemon.stats.statuses == 3, what="three status messages")
    publisher.publish(status_topic, b"", retain=True)  # clear the retained message
    await asyncio.to_thread(publisher.wait_acknowledged)


async def test_a_retained_offline_status_registers_an_unknown_device_as_inactive(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """A status retained before the daemon subscribed still arrives and registers the device."""
    status_topic = TopicScheme(prefix).status("smart_meter", "m-9")
    publisher.publish(status_topic, b'{"state": "offline"}', retain=True)
    await asyncio.to_thread(publisher.wait_acknowledged)
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        await wait_until(lambda: daemon.stats.statuses == 1, what="the retained status")
    assert database.query("SELECT device_type, status FROM iot_devices") == [
        ("smart_meter", "inactive")
    ]
    publisher.publish(status_topic, b"", retain=True)
    await asyncio.to_thread(publisher.wait_acknowledged)
