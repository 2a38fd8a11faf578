"""Several daemons on one PostgreSQL database, sharing the load through $share subscriptions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.decode.topics import TopicScheme
from meterflow.daemon import Daemon
from meterflow.publisher import Publisher
from meterflow.settings import Settings
from partitions import Month
from tests.databases import Database, count_readings, partition_tables
from tests.helpers import make_settings, payload, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess
from tests.test_delivery_guarantees import Background, numbered

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]


def instance(
    broker: Mosquitto, database: Database, prefix: str, number: int, protocol: str = "auto"
) -> Settings:
    return make_settings(
        broker.url,
        database.url,
        prefix,
        **{
            "mqtt.shared_group": prefix,
            "mqtt.client_id": f"meterflow-{prefix}-{number}",
            "mqtt.protocol": protocol,
        },
    )


async def publish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    with Publisher("127.0.0.1", broker.port) as publisher:
        for topic, body in messages:
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)


def shared_stored(daemons: list[Daemon]) -> int:
    return sum(d.stats.stored for d in daemons)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_two_daemons_sharing_a_subscription_store_every_reading_once(
    broker: Mosquitto, postgres: Database, prefix: str, protocol: str
) -> None:
    """3,000 readings through two daemons: exactly 3,000 rows, and both did part of the work;
    in MQTT 3.1.1 too, where the broker offers shared subscriptions (Mosquitto does)."""
    messages = numbered(prefix, 3000)
    async with (
        running_daemon(instance(broker, postgres, prefix, 1, protocol)) as first,
        running_daemon(instance(broker, postgres, prefix, 2, protocol)) as second,
    ):
        await publish(broker, messages)
        await wait_until(lambda: shared_stored([first, second]) == 3000, what="3000 rows")
    assert count_readings(postgres) == 3000
    assert first.stats.received > 0
    assert second.stats.received > 0
    assert first.stats.received + second.stats.received == 3000


async def test_daemons_meeting_new_months_together_create_each_partition_once(
    broker: Mosquitto, postgres: Database, prefix: str
) -> None:
    """The first readings of six new months reach both daemons at once; all are stored."""
    scheme = TopicScheme(prefix)
    start = datetime(2024, 1, 15, tzinfo=UTC)
    months = [start + timedelta(days=31 * n) for n in range(6)]
    messages = [
        (scheme.telemetry("smart_meter", f"m-{n}-{k}"), payload(f"m-{n}-{k}", at))
        for n, at in enumerate(months)
        for k in range(2)
    ]
    async with (
        running_daemon(instance(broker, postgres, prefix, 1)) as first,
        running_daemon(instance(broker, postgres, prefix, 2)) as second,
    ):
        await publish(broker, messages)
        await wait_until(lambda: shared_stored([first, second]) == 12, what="12 readings")
    assert {Month.of(at).table_name for at in months} <= partition_tables(postgres)
    assert count_readings(postgres) == 12


async def test_killing_one_of_two_daemons_mid_stream_loses_nothing(
    broker: Mosquitto, postgres: Database, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL one instance while both ingest; restarted with its id, it reclaims its messages."""
    env = {"METERFLOW_MQTT__SHARED_GROUP": prefix}
    daemons = [
        DaemonProcess(broker.url, postgres.url, prefix, tmp_path / f"d{n}.log", **env)
        for n in (1, 2)
    ]
    for number, daemon in enumerate(daemons, start=1):
        daemon.command += ["--instance", str(number)]
    messages = numbered(prefix, 6000)
    with daemons[0], daemons[1], Background(broker.port, messages, per_second=2000) as publishing:
        await wait_until(lambda: count_readings(postgres) >= 1500, within=30, what="1500 rows")
        daemons[0].kill()
        await asyncio.sleep(0.5)
        daemons[0].start()
        publishing.join()
        await wait_until(lambda: count_readings(postgres) == 6000, within=60, what="6000 rows")
    assert stored_sequence_numbers_pg(postgres) == list(range(6000))


def stored_sequence_numbers_pg(database: Database) -> list[int]:
    rows = database.query("SELECT (metadata->>'seq')::int FROM energy_data")
    return sorted(seq for (seq,) in rows)
