"""Nothing accepted is lost, nothing is stored twice: the daemon killed, stopped, cut off."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Literal

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from tests.helpers import (
    count_rows,
    make_settings,
    payload,
    query,
    recent,
    running_daemon,
    wait_until,
)
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess

pytestmark = pytest.mark.mqtt


def numbered(prefix: str, count: int, devices: int = 50) -> list[tuple[str, bytes]]:
    """`count` readings, each carrying its sequence number as `seq` (kept in metadata)."""
    scheme = TopicScheme(prefix)
    base = recent(2 * 24 * 3600)
    return [
        (
            scheme.telemetry("smart_meter", f"m-{seq % devices}"),
            payload(f"m-{seq % devices}", base + timedelta(seconds=seq), seq=seq),
        )
        for seq in range(count)
    ]


def has_rows(db_path: Path, at_least: int) -> bool:
    return count_rows(db_path) >= at_least


def stored_sequence_numbers(db_path: Path) -> list[int]:
    rows = query(db_path, "SELECT json_extract(metadata, '$.seq') FROM energy_data")
    return sorted(seq for (seq,) in rows)


class Background:
    """Publishes in a thread at a modest pace, so that the daemon is mid-stream when hit."""

    def __init__(
        self,
        port: int,
        messages: list[tuple[str, bytes]],
        per_second: float,
        protocol: Literal["5", "3.1.1"] = "5",
    ) -> None:
        self._messages = messages
        self._pause = 1 / per_second
        self._protocol: Literal["5", "3.1.1"] = protocol
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self.error: BaseException | None = None

    def _run(self, port: int) -> None:
        stop = threading.Event()
        try:
            with Publisher("127.0.0.1", port, protocol=self._protocol) as publisher:
                for topic, body in self._messages:
                    publisher.publish(topic, body)
                    stop.wait(self._pause)
                publisher.wait_acknowledged()
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=60)


async def test_sigkill_mid_stream_then_restart_stores_every_message_exactly_once(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """Killed with SIGKILL three times while readings flow, the daemon loses and doubles none."""
    messages = numbered(prefix, 4000)
    daemon = DaemonProcess(broker.url, db_path, prefix, tmp_path / "daemon.log")
    with daemon, Background(broker.port, messages, per_second=1500) as publishing:
        for kill_after in (600, 1600, 2600):
            await wait_until(partial(has_rows, db_path, kill_after), what=f"{kill_after} rows")
            daemon.kill()
            daemon.start()
        publishing.join()
        await wait_until(lambda: count_rows(db_path) == 4000, within=30, what="all 4000 rows")
    assert stored_sequence_numbers(db_path) == list(range(4000))


async def drain_session(broker: Mosquitto, client_id: str, quiet_s: float = 1.0) -> list[bytes]:
    """Resume `client_id`'s session and collect what the broker still holds for it."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 60
    received: list[bytes] = []
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
    ) as client:
        while True:
            try:
                async with asyncio.timeout(quiet_s):
                    message = await anext(aiter(client.messages))
            except TimeoutError:
                return received
            assert isinstance(message.payload, bytes)
            received.append(message.payload)


async def test_sigterm_commits_and_acknowledges_everything_received_before_exit(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """After SIGTERM the daemon exits 0, and what it stored is exactly what it acknowledged."""
    messages = numbered(prefix, 3000)
    daemon = DaemonProcess(broker.url, db_path, prefix, tmp_path / "daemon.log")
    with daemon, Background(broker.port, messages, per_second=2000) as publishing:
        await wait_until(lambda: count_rows(db_path) >= 1000, what="1000 rows")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        publishing.join()
    stored = set(stored_sequence_numbers(db_path))
    held_back = await drain_session(broker, f"meterflow-{prefix}")
    redelivered = {int(body.split(b'"seq": ')[1].rstrip(b"}")) for body in held_back}
    assert stored.isdisjoint(redelivered), "a committed reading was not acknowledged"
    assert stored | redelivered == set(range(3000))
    assert '"stopped"' in daemon.log()


async def test_broker_restart_mid_stream_loses_nothing_and_daemon_reconnects(
    own_broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """The broker stopped and started again: the daemon reconnects and every reading lands."""
    first, second = numbered(prefix, 2000)[:1000], numbered(prefix, 2000)[1000:]
    daemon = DaemonProcess(own_broker.url, db_path, prefix, tmp_path / "daemon.log")
    with daemon:
        with Publisher("127.0.0.1", own_broker.port) as publisher:
            for topic, body in first:
                publisher.publish(topic, body)
            publisher.wait_acknowledged()
        own_broker.stop(signal.SIGTERM)
        daemon.wait_for_log('"broker unavailable, reconnecting"')
        own_broker.start()
        daemon.wait_for_log('"subscribed"', occurrences=2)
        with Publisher("127.0.0.1", own_broker.port) as publisher:
            for topic, body in second:
                publisher.publish(topic, body)
            publisher.wait_acknowledged()
        await wait_until(lambda: count_rows(db_path) == 2000, within=30, what="all 2000 rows")
    assert stored_sequence_numbers(db_path) == list(range(2000))


# aiomqtt reads its socket whatever the window says, so it holds the overshoot instead.
@pytest.mark.own_subscriber
async def test_a_slow_writer_stops_reading_and_the_broker_keeps_the_backlog(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """Commits crawling behind a lock keep in-flight messages near the window; all land.

    Each commit acknowledges a batch, and Mosquitto 2.0.11 answers acknowledgements with
    more than the window allows, so this only holds because the daemon stops reading.
    """
    settings = make_settings(
        broker.url,
        db_path,
        prefix,
        **{
            "mqtt.receive_maximum": 300,
            "batch.max_messages": 100,
            "storage.sqlite_busy_timeout_ms": 20,
            "storage.retry_initial_s": 0.01,
            "storage.retry_max_s": 0.05,
        },
    )
    messages = numbered(prefix, 3000)
    stats_seen: list[int] = []
    async with running_daemon(settings) as daemon:
        await asyncio.to_thread(publish_in_thread, broker.port, messages[:1])
        await wait_until(lambda: daemon.stats.stored == 1, what="the first reading")
        with sluggish(db_path):
            await asyncio.to_thread(publish_in_thread, broker.port, messages[1:])
            for _ in range(100):
                stats = daemon.stats
                stats_seen.append(stats.received - stats.stored - stats.duplicates)
                await asyncio.sleep(0.02)
        await wait_until(lambda: count_rows(db_path) == 3000, within=30, what="all 3000 rows")
    assert max(stats_seen) <= 300, "the daemon read on past its window"
    assert stored_sequence_numbers(db_path) == list(range(3000))


def publish_in_thread(port: int, messages: list[tuple[str, bytes]]) -> None:
    with Publisher("127.0.0.1", port) as publisher:
        for topic, body in messages:
            publisher.publish(topic, body)
        publisher.wait_acknowledged()


@contextmanager
def sluggish(db_path: Path) -> Iterator[None]:
    """Another connection takes SQLite's exclusive lock for 200 ms of every 210 ms."""
    done = threading.Event()

    def hog() -> None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        while not done.is_set():
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except sqlite3.OperationalError:
                # The daemon holds the lock (its commit outlasted our wait): try again.
                continue
            done.wait(0.2)
            conn.execute("COMMIT")
            time.sleep(0.01)
        conn.close()

    thread = threading.Thread(target=hog)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
