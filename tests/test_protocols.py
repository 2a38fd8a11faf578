"""MQTT 3.1.1 beside MQTT 5: the packets, Mosquitto spoken to in 3.1.1, and NATS's MQTT
listener, which refuses MQTT 5 (`mqtt.protocol = "auto"` falls back)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ingest.errors import ConnectRefusedError
from ingest.settings import MqttSettings
from ingest.source import packets
from ingest.source.base import connect_in_a_version
from meterflow.publisher import Publisher
from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto, free_port
from tests.nats import NatsServer
from tests.process import DaemonProcess
from tests.rabbitmq import RabbitMQ
from tests.scrape import readyz
from tests.test_delivery_guarantees import (
    Background,
    has_rows,
    numbered,
    stored_sequence_numbers,
)


def test_a_3_1_1_connect_has_level_4_no_properties_and_a_persistent_session() -> None:
    raw = packets.connect("m-1", keepalive=30, clean_start=False, session_expiry=600,
                          receive_maximum=100, version=packets.MQTT311)  # fmt: skip
    assert raw == bytes([0x10, 15, 0, 4]) + b"MQTT" + bytes([4, 0x00, 0, 30, 0, 3]) + b"m-1"


def test_a_3_1_1_subscribe_has_no_properties_and_only_the_qos() -> None:
    raw = packets.subscribe(7, "a/#", 1, packets.RETAIN_SEND_IF_NEW, packets.MQTT311)
    assert raw == bytes([0x82, 8, 0, 7, 0, 3]) + b"a/#" + bytes([1])


def test_a_qos_0_publish_carries_properties_only_in_mqtt_5() -> None:
    assert packets.publish_qos0("R/x", b"{}") == bytes([0x30, 8, 0, 3]) + b"R/x" + b"\x00{}"
    assert packets.publish_qos0("R/x", b"{}", packets.MQTT311) == bytes([0x30, 7, 0, 3]) + (
        b"R/x{}"
    )


def test_3_1_1_packets_from_the_broker_are_read_without_properties() -> None:
    v311 = packets.MQTT311
    publish = bytes([0, 3]) + b"a/b" + bytes([0, 9]) + b'{"x": 1}'
    assert packets.parse(0x32, memoryview(publish), v311) == packets.Publish(
        "a/b", b'{"x": 1}', 1, 9, False, False
    )
    assert packets.parse(0x20, memoryview(bytes([1, 0])), v311) == packets.Connack(
        True, 0, None, None
    )
    assert packets.parse(0x90, memoryview(bytes([0, 7, 1])), v311) == packets.Suback(7, (1,))


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1, 0x84), (2, 0x85), (3, 0x88), (4, 0x86), (5, 0x87)],
)
def test_3_1_1_refusals_read_as_their_mqtt_5_reasons_on_either_version(
    code: int, reason: int
) -> None:
    """A 3.1.1-only broker answers an MQTT 5 CONNECT with a two-byte CONNACK: read as such."""
    for version in (packets.MQTT5, packets.MQTT311):
        connack = packets.parse(0x20, memoryview(bytes([0, code])), version)
        assert isinstance(connack, packets.Connack)
        assert connack.reason_code == reason


async def test_auto_remembers_the_version_it_found_but_not_one_that_was_set() -> None:
    """Under "auto", a broker that refused MQTT 5 is asked in 3.1.1 first next time; a
    connection with the version set ("3.1.1") leaves what "auto" tries there unchanged."""
    tried: list[int] = []

    async def only_3_1_1(version: int, _timeout_s: float) -> str:
        tried.append(version)
        if version == packets.MQTT5:
            raise ConnectRefusedError("unsupported version", packets.UNSUPPORTED_PROTOCOL_VERSION)
        return "connected"

    async def any_version(version: int, _timeout_s: float) -> str:
        tried.append(version)
        return "connected"

    port = free_port()
    auto = MqttSettings(url=f"mqtt://127.0.0.1:{port}", protocol="auto")
    set_to_3_1_1 = MqttSettings(url=f"mqtt://127.0.0.2:{port}", protocol="3.1.1")
    assert await connect_in_a_version(auto, only_3_1_1) == ("connected", packets.MQTT311)
    assert await connect_in_a_version(auto, only_3_1_1) == ("connected", packets.MQTT311)
    await connect_in_a_version(set_to_3_1_1, any_version)
    tried.clear()
    await connect_in_a_version(set_to_3_1_1.model_copy(update={"protocol": "auto"}), any_version)
    assert tried == [packets.MQTT5]


@pytest.mark.mqtt
async def test_mosquitto_spoken_to_in_3_1_1_keeps_the_session_across_a_restart(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """protocol = "3.1.1": readings published while the daemon is down are kept by the
    broker's persistent session (clean_session = 0) and stored once it is back."""
    db = tmp_path / "meterflow.db"
    settings = make_settings(broker.url, db, prefix, **{"mqtt.protocol": "3.1.1"})
    messages = numbered(prefix, 600)
    with Publisher("127.0.0.1", broker.port, protocol="3.1.1") as publisher:
        async with running_daemon(settings):
            for topic, body in messages[:300]:
                publisher.publish(topic, body)
            await wait_until(lambda: count_rows(db) == 300, what="300 rows")
        for topic, body in messages[300:]:
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)
        async with running_daemon(settings):
            await wait_until(lambda: count_rows(db) == 600, what="600 rows")
    assert stored_sequence_numbers(db) == list(range(600))


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One node for the module: it takes ten seconds to start."""
    with RabbitMQ(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node


@contextlib.contextmanager
def broker_speaking_3_1_1(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, int]]:
    """(URL, port) of Mosquitto (spoken to in 3.1.1), NATS's MQTT listener, or RabbitMQ's
    MQTT plugin (3.10: 3.1.1 only), each started for the test."""
    if kind == "nats":
        with NatsServer(tmp_path) as nats:
            yield nats.url, nats.mqtt_port
    elif kind == "rabbitmq":
        node: RabbitMQ = request.getfixturevalue("rabbitmq")
        yield node.url, node.mqtt_port
    else:
        broker: Mosquitto = request.getfixturevalue("broker")
        yield broker.url, broker.port


@pytest.mark.mqtt
@pytest.mark.parametrize("kind", ["nats", "rabbitmq"])
async def test_a_broker_refusing_mqtt_5_is_spoken_to_in_3_1_1_under_auto(
    kind: str, request: pytest.FixtureRequest, prefix: str, tmp_path: Path
) -> None:
    """NATS refuses MQTT 5 with a CONNACK; RabbitMQ 3.10 hangs up. Either way "auto"
    connects again in 3.1.1 and every reading is stored."""
    db = tmp_path / "meterflow.db"
    with broker_speaking_3_1_1(kind, request, tmp_path) as (url, port):
        settings = make_settings(url, db, prefix)
        messages = numbered(prefix, 300)
        with capture_logs() as logs:
            async with running_daemon(settings):
                with Publisher("127.0.0.1", port, protocol="3.1.1") as publisher:
                    for topic, body in messages:
                        publisher.publish(topic, body)
                    await asyncio.to_thread(publisher.wait_acknowledged)
                await wait_until(lambda: count_rows(db) == 300, what="300 rows")
    assert stored_sequence_numbers(db) == list(range(300))
    [subscribed] = [line for line in logs if line["event"] == "subscribed"]
    assert subscribed["protocol"] == "3.1.1"


@pytest.mark.mqtt
async def test_a_lasting_refusal_is_logged_once_with_its_fix_and_shown_in_readyz(
    prefix: str, tmp_path: Path
) -> None:
    """protocol = "5" against NATS: refused at every reconnect, said once, in /readyz."""
    metrics = free_port()
    with NatsServer(tmp_path) as nats:
        daemon = DaemonProcess(
            nats.url, tmp_path / "meterflow.db", prefix, tmp_path / "daemon.log",
            METERFLOW_MQTT__PROTOCOL="5", METERFLOW_METRICS__PORT=str(metrics),
            METERFLOW_MQTT__RECONNECT_MAX_S="0.2",
        )  # fmt: skip
        with daemon.started_in_background():
            await asyncio.to_thread(daemon.wait_for_log, "broker refuses the connection")
            await wait_until(lambda: daemon.log().count('"summary"') >= 2, what="2 summaries")
            status, health = await readyz(metrics)
            log = daemon.log()
    assert status == 503
    assert log.count("broker refuses the connection") == 1
    assert "broker unavailable" not in log
    assert json.loads(log.splitlines()[-1])["reconnects"] > 3
    [problem] = health["problems"]
    assert "unsupported protocol version (0x84)" in problem
    assert 'set mqtt.protocol = \\"auto\\"' in json.dumps(problem)


@pytest.mark.mqtt
@pytest.mark.parametrize("kind", ["mosquitto", "nats", "rabbitmq"])
async def test_sigkills_mid_stream_lose_and_double_nothing_on_each_3_1_1_broker(
    kind: str, request: pytest.FixtureRequest, prefix: str, tmp_path: Path
) -> None:
    """The delivery suite's promise on MQTT 3.1.1: killed with SIGKILL three times while
    readings flow, the daemon stores every one exactly once."""
    db = tmp_path / "meterflow.db"
    with broker_speaking_3_1_1(kind, request, tmp_path) as (url, port):
        daemon = DaemonProcess(
            url, db, prefix, tmp_path / "daemon.log", METERFLOW_MQTT__PROTOCOL="3.1.1"
        )
        messages = numbered(prefix, 3000)
        with daemon, Background(port, messages, per_second=1500, protocol="3.1.1") as publishing:
            for kill_after in (400, 1200, 2000):
                await wait_until(partial(has_rows, db, kill_after), what=f"{kill_after} rows")
                await asyncio.to_thread(daemon.kill)
                await asyncio.to_thread(daemon.start)
            publishing.join()
            await wait_until(lambda: count_rows(db) == 3000, within=60, what="all 3000 rows")
    assert stored_sequence_numbers(db) == list(range(3000))
