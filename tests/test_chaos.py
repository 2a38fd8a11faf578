"""Chaos: the daemon killed at random and at chosen crash points, and started on a backlog."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from functools import partial
from pathlib import Path

import pytest

from meterflow.publisher import Publisher
from storage.faults import CRASH_EXIT_CODE
from tests.databases import PostgresDatabase, count_readings
from tests.helpers import RECEIVE_PATH, count_rows, wait_until
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess
from tests.test_delivery_guarantees import Background, numbered, stored_sequence_numbers

pytestmark = pytest.mark.mqtt


async def test_ten_random_sigkills_during_a_20000_message_stream_lose_and_double_nothing(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL at ≥10 random moments, restarting each time: every reading stored once.

    The seed is printed (and in the failure message); METERFLOW_CHAOS_SEED replays a run.
    """
    seed = int(os.environ.get("METERFLOW_CHAOS_SEED", random.randrange(2**32)))
    print(f"chaos seed: {seed}")
    rng = random.Random(seed)
    messages = numbered(prefix, 20_000, devices=200)
    daemon = DaemonProcess(broker.url, db_path, prefix, tmp_path / "daemon.log")
    kills = 0
    with daemon, Background(broker.port, messages, per_second=3000) as publishing:
        while kills < 10 or publishing.running:
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            daemon.kill()
            kills += 1
            daemon.start()
        publishing.join()
        await wait_until(lambda: count_rows(db_path) == 20_000, within=60, what="20000 rows")
    assert stored_sequence_numbers(db_path) == list(range(20_000)), f"chaos seed {seed}"
    assert kills >= 10
    # The fast path, whole: uvloop comes with the dev extra, and ingest.event_loop is "auto";
    # the aiomqtt path keeps asyncio's loop.
    loop = "uvloop" if RECEIVE_PATH == "meterflow" else "asyncio"
    assert f'"event_loop": "{loop}"' in daemon.log()


@pytest.mark.parametrize("point", ["before-commit", "during-commit", "after-commit"])
async def test_a_crash_at_each_point_of_the_commit_loses_and_doubles_nothing(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path, point: str
) -> None:
    """Dying before, during or after the commit of the third batch: exactly N rows after restart.

    After the commit but before the ack, the broker redelivers what was already stored;
    the restarted daemon counts those as duplicates and stores nothing twice.
    """
    messages = numbered(prefix, 2000)
    daemon = DaemonProcess(
        broker.url,
        db_path,
        prefix,
        tmp_path / "daemon.log",
        METERFLOW_BATCH__MAX_MESSAGES="100",
        METERFLOW_TEST_CRASH=f"{point}:3",
    )
    daemon.start()
    with Publisher("127.0.0.1", broker.port) as publisher:
        for topic, body in messages:
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)
    assert await asyncio.to_thread(daemon.wait) == CRASH_EXIT_CODE
    stored_at_crash = count_rows(db_path)
    assert stored_at_crash < 2000

    del daemon.env["METERFLOW_TEST_CRASH"]
    with daemon:
        await wait_until(lambda: count_rows(db_path) == 2000, within=30, what="all 2000 rows")
        daemon.signal(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait) == 0
    assert stored_sequence_numbers(db_path) == list(range(2000))
    if point == "after-commit":
        assert stored_at_crash >= 100
        assert daemon.last_summary()["duplicates"] >= 1


async def test_a_backlog_published_while_the_daemon_was_down_is_stored_on_start(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """10,000 readings published during downtime wait in the session and all land."""
    daemon = DaemonProcess(broker.url, db_path, prefix, tmp_path / "daemon.log")
    daemon.start()
    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait) == 0
    with Publisher("127.0.0.1", broker.port) as publisher:
        for topic, body in numbered(prefix, 10_000):
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)
    with daemon:
        await wait_until(lambda: count_rows(db_path) == 10_000, within=60, what="10000 rows")
    assert stored_sequence_numbers(db_path) == list(range(10_000))


def has_readings(database: PostgresDatabase, at_least: int) -> bool:
    return count_readings(database) >= at_least


@pytest.mark.postgres
async def test_postgres_connections_killed_mid_stream_lose_and_double_nothing(
    broker: Mosquitto, postgres: PostgresDatabase, prefix: str, tmp_path: Path
) -> None:
    """pg_terminate_backend on the daemon's connections, five times: it reconnects, catches up."""
    messages = numbered(prefix, 6000)
    daemon = DaemonProcess(broker.url, postgres.url, prefix, tmp_path / "daemon.log")
    terminate = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{postgres.name}' AND pid <> pg_backend_pid()"
    )
    killed = 0
    with daemon, Background(broker.port, messages, per_second=2000) as publishing:
        for at_least in (500, 1500, 2500, 3500, 4500):
            await wait_until(partial(has_readings, postgres, at_least), what=f"{at_least} rows")
            killed += postgres.query(terminate)[0][0]
        publishing.join()
        await wait_until(lambda: count_readings(postgres) == 6000, within=60, what="6000 rows")
    assert killed >= 5
    rows = postgres.query("SELECT (metadata->>'seq')::int FROM energy_data")
    assert sorted(seq for (seq,) in rows) == list(range(6000))
    assert '"commit failed, retrying"' in daemon.log()
