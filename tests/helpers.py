"""Helpers the end-to-end tests share: settings, an in-process daemon, polling the database."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.decode import Router
from meterflow.daemon import Daemon
from meterflow.settings import Settings, load_settings
from storage import BatchWriter, Reading, WriteBatch, open_engine

# scripts/test runs the broker tests a second time with METERFLOW_MQTT__CLIENT=aiomqtt:
# every daemon the tests start then receives through aiomqtt instead of our own subscriber.
RECEIVE_PATH = os.environ.get("METERFLOW_MQTT__CLIENT", "meterflow")


def make_settings(broker_url: str, database: Path | str, prefix: str, **overrides: Any) -> Settings:
    """Settings for one test: its own topic prefix, client id and database (file or URL)."""
    values: dict[str, Any] = {
        "mqtt.url": broker_url,
        "mqtt.topic_prefix": prefix,
        "mqtt.client_id": f"meterflow-{prefix}",
        "mqtt.reconnect_initial_s": 0.1,
        "mqtt.reconnect_max_s": 1.0,
        "storage.url": f"sqlite:///{database}" if isinstance(database, Path) else database,
        "batch.max_delay_ms": 50,
        "log.summary_interval_s": 3600,
    }
    values.update(overrides)
    return load_settings(None, **values)


def router_for(settings: Settings) -> Router:
    """The router a daemon with these settings decodes every message through."""
    return Router.configured(settings.decoders, settings.ingest, settings.mqtt.topic_prefix)


@asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Daemon]:
    """A daemon running in this event loop, subscribed before the body starts."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run(), name="test-daemon")
    try:
        async with asyncio.timeout(10):
            while not daemon.connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield daemon
    finally:
        daemon.request_stop()
        async with asyncio.timeout(20):
            await task


def query(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db_path: Path, sql: str, *params: Any) -> Any:
    rows = query(db_path, sql, *params)
    return rows[0][0] if rows else None


def count_rows(db_path: Path, table: str = "energy_data") -> int:
    if not db_path.exists():
        return 0
    try:
        return int(scalar(db_path, f"SELECT count(*) FROM {table}"))
    except sqlite3.OperationalError:
        return 0


async def wait_until(
    predicate: Callable[[], bool], within: float = 20.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def payload(
    device_id: str, ts: datetime, *, energy: float = 0.25, power: float = 1.5, **extra: Any
) -> bytes:
    document = {
        "device_id": device_id,
        "ts": ts.isoformat(),
        "energy_kwh": energy,
        "power_kw": power,
    }
    return json.dumps(document | extra).encode()


def recent(seconds_ago: float = 3600.0) -> datetime:
    """A reading time safely in the past, truncated to the millisecond."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def store_batches(url: str, batches: Sequence[Sequence[Reading]]) -> None:
    """Store each batch through a BatchWriter of its own engine, in order, as the daemon
    would; for synchronous tests."""

    async def go() -> None:
        engine = open_engine(url)
        async with BatchWriter(engine, url=url) as writer:
            for batch in batches:
                await writer.write(WriteBatch(batch))
        await engine.dispose()

    asyncio.run(go())
