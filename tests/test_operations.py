"""Operators' view of a running daemon: /metrics, /healthz and /readyz over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from tests.cli import meterflow
from tests.databases import Database
from tests.helpers import make_settings, payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.scrape import get, readyz, sample, samples

pytestmark = pytest.mark.mqtt


async def test_metrics_count_received_stored_rejected_and_lag_as_messages_flow(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """Scraping /metrics after 50 good and 7 bad messages shows exactly those counts."""
    scheme = TopicScheme(prefix)
    base = recent(120)
    settings = make_settings(
        broker.url,
        database.url,
        prefix,
        **{"metrics.port": 0, "devices.check_interval_s": 0.1},
    )
    async with running_daemon(settings) as daemon:
        assert daemon.http_port is not None
        before = await samples(daemon.http_port)
        assert sample(before, "meterflow_messages_received_total") == 0
        for n in range(50):
            publisher.publish(
                scheme.telemetry("smart_meter", f"m-{n % 5}"),
                payload(f"m-{n % 5}", base.replace(second=n % 60), battery_pct=10.0 + n % 5),
            )
        for n in range(5):
            publisher.publish(scheme.telemetry("smart_meter", "m-bad"), b"{not json" + bytes([n]))
        publisher.publish(f"{prefix}/toaster/t-1/telemetry", payload("t-1", base))
        publisher.publish(scheme.telemetry("solar_panel", "pv-1"), payload("pv-9", base))
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.received == 57, what="57 messages")
        await wait_until(lambda: daemon.stats.batches >= 1 and not daemon.health().in_flight)
        await wait_until(lambda: daemon.facts().devices.get("active") == 5, what="device check")
        after = await samples(daemon.http_port)

    assert sample(after, "meterflow_messages_received_total") == 57
    assert sample(after, "meterflow_readings_stored_total") == 50
    assert sample(after, "meterflow_messages_rejected_total", reason="payload") == 5
    assert sample(after, "meterflow_messages_rejected_total", reason="topic") == 1
    assert sample(after, "meterflow_messages_rejected_total", reason="device_mismatch") == 1
    assert sample(after, "meterflow_messages_rejected_total", reason="timestamp") == 0
    assert sample(after, "meterflow_lag_seconds_count") == 50
    # Every reading was stamped about two minutes before it was committed.
    assert sample(after, "meterflow_lag_seconds_bucket", le="60.0") == 0
    assert sample(after, "meterflow_lag_seconds_bucket", le="300.0") == 50
    assert sample(after, "meterflow_batch_rows_sum") == 57
    assert sample(after, "meterflow_commit_seconds_count") == daemon.stats.batches
    assert sample(after, "meterflow_devices", status="active") == 5
    assert sample(after, "meterflow_devices_low_battery") == 5
    assert sample(after, "meterflow_partitions") >= 4
    assert sample(after, "meterflow_connected") == 1
    assert sample(after, "process_resident_memory_bytes") > 0


async def test_healthz_and_readyz_answer_and_unknown_paths_are_404(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """/healthz says ok, /readyz reports ready with its facts, anything else is 404."""
    settings = make_settings(broker.url, db_path, prefix, **{"metrics.port": 0})
    async with running_daemon(settings) as daemon:
        assert daemon.http_port is not None
        assert await get(daemon.http_port, "/healthz") == (200, b"ok\n")
        status, document = await readyz(daemon.http_port)
        not_found, _ = await get(daemon.http_port, "/nope")
    assert status == 200
    assert document["ready"] is True
    assert document["problems"] == []
    assert document["connected"] is True
    assert not_found == 404


async def test_readyz_turns_unhealthy_while_the_broker_is_down_and_healthy_after(
    own_broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """Stopping the broker makes /readyz 503 naming the broker; restarting it makes it 200."""
    settings = make_settings(own_broker.url, db_path, prefix, **{"metrics.port": 0})
    async with running_daemon(settings) as daemon:
        port = daemon.http_port
        assert port is not None
        assert (await readyz(port))[0] == 200
        own_broker.stop()
        await wait_until(lambda: not daemon.connected, what="the daemon to notice")
        status, document = await readyz(port)
        assert status == 503
        assert document["problems"] == ["not connected to the broker"]
        assert await get(port, "/healthz") == (200, b"ok\n")
        own_broker.start()
        await wait_until(lambda: daemon.connected, within=30, what="reconnection")
        status, document = await readyz(port)
        assert status == 200, document
        assert daemon.stats.reconnects >= 1


async def test_status_prints_the_daemons_health_and_the_databases_facts(
    broker: Mosquitto, publisher: Publisher, db_path: Path, prefix: str
) -> None:
    """`meterflow status --url` reports ready, the counters and the devices; exit 0."""
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    settings = make_settings(broker.url, db_path, prefix, **{"metrics.port": 0})
    async with running_daemon(settings) as daemon:
        publisher.publish(topic, payload("m-1", recent(60), battery_pct=5.0))
        publisher.publish(topic, b"{broken")
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.batches >= 1 and daemon.stats.received == 2)
        await wait_until(lambda: daemon.health().in_flight == 0, what="the acks")
        url = f"http://127.0.0.1:{daemon.http_port}"
        result = await asyncio.to_thread(
            meterflow, "status", "--url", url, "--db", f"sqlite:///{db_path}"
        )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "daemon: ready"
    assert "received 2, stored 1, duplicates 0, rejected 1, reconnects 0" in lines[2]
    assert "devices: 1 active; 1 with low battery" in result.output
    assert "dead letters in the last 24 h: 1" in result.output


def test_status_exits_1_when_the_daemon_is_unreachable(db_path: Path) -> None:
    """A configured endpoint nobody answers on is reported, with exit status 1."""
    result = meterflow("status", "--url", "http://127.0.0.1:9", "--db", f"sqlite:///{db_path}")
    assert result.exit_code == 1
    assert result.output.startswith("daemon: unreachable at http://127.0.0.1:9")
    assert "devices: none; 0 with low battery" in result.output
