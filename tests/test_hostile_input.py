"""Hostile input: every message ends as a reading or a dead letter, and nothing reaches SQL."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from tests.helpers import make_settings, payload, query, recent, running_daemon, scalar, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt

INJECTION = "x'); DROP TABLE energy_data;--"
TRAVERSAL = "..\\..\\etc"


def hostile(prefix: str) -> list[tuple[str, bytes]]:
    """Messages no device should send, each of which must become a dead letter."""
    meter = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    ts = recent().isoformat()
    return [
        (meter, b"\xff\xfe\x00invalid utf-8"),
        (meter, b"[" * 5000 + b"]" * 5000),
        (meter, b'{"a":' * 3000 + b"1" + b"}" * 3000),
        (meter, json.dumps({"ts": ts, "energy_kwh": 10**40, "power_kw": 1}).encode()),
        (meter, f'{{"ts": "{ts}", "energy_kwh": 1e999, "power_kw": 1}}'.encode()),
        (meter, f'{{"ts": "{ts}", "energy_kwh": NaN, "power_kw": 1}}'.encode()),
        (meter, b'{"ts": 1e400, "energy_kwh": 1, "power_kw": 1}'),
        (meter, b"null"),
        (meter, b'"a string"'),
        (meter, b"{}"),
        (meter, b"{" + b" " * 200_000 + b"}"),
        (f"{prefix}/{INJECTION}/m-1/telemetry", payload("m-1", recent())),
    ]


def outside_the_subscription(prefix: str) -> list[tuple[str, bytes]]:
    """Topics with extra levels (a `/` in an id is a level): the broker never delivers them."""
    return [
        (f"{prefix}/smart_meter/../../etc/telemetry", payload("m", recent())),
        (f"{prefix}/smart_meter/{INJECTION}/telemetry/extra", payload("m", recent())),
    ]


async def test_hostile_messages_become_dead_letters_and_ids_stay_data(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """Malformed, oversized and injection-shaped input is rejected or stored verbatim as data."""
    scheme = TopicScheme(prefix)
    bad = hostile(prefix)
    good = [
        (scheme.telemetry("smart_meter", device), payload(device, recent(), seq=n))
        for n, device in enumerate([INJECTION, TRAVERSAL, "m-1"])
    ]
    # The last value of a duplicated key wins, as in every JSON parser: a valid reading.
    duplicate_keys = (
        scheme.telemetry("solar_panel", "pv-1"),
        f'{{"ts": "{recent().isoformat()}", "energy_kwh": -5, "energy_kwh": 2, "power_kw": 1}}'
        .encode(),
    )  # fmt: skip
    messages = [*bad[:6], good[0], *outside_the_subscription(prefix), *bad[6:], good[1]]
    messages += [duplicate_keys, good[2]]
    async with running_daemon(make_settings(broker.url, db_path, prefix)) as daemon:
        with Publisher("127.0.0.1", broker.port) as publisher:
            for topic, body in messages:
                publisher.publish(topic, body)
            await asyncio.to_thread(publisher.wait_acknowledged)
        delivered = len(bad) + len(good) + 1
        await wait_until(
            lambda: daemon.stats.stored + daemon.stats.rejected.total() == delivered,
            what="every delivered message stored or rejected",
        )
    assert (daemon.stats.stored, daemon.stats.rejected.total()) == (4, len(bad))
    devices = {device for (device,) in query(db_path, "SELECT device_id FROM energy_data")}
    assert devices == {INJECTION, TRAVERSAL, "m-1", "pv-1"}
    assert scalar(db_path, "SELECT energy_amount FROM energy_data WHERE device_id = 'pv-1'") == 2
    reasons = [reason for (reason,) in query(db_path, "SELECT reason FROM dead_letters")]
    assert all(reasons), "every dead letter says why"
    assert "payload of 200002 bytes exceeds the limit of 65536" in reasons
    tables = {name for (name,) in query(db_path, "SELECT name FROM sqlite_master")}
    assert {"energy_data", "iot_devices", "dead_letters"} <= tables
    assert not any(".." in name or "DROP" in name for name in tables)


async def test_database_files_are_readable_by_their_owner_only(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """The SQLite file, its WAL and shared-memory files and their directory are owner-only."""
    async with running_daemon(make_settings(broker.url, db_path, prefix)) as daemon:
        with Publisher("127.0.0.1", broker.port) as publisher:
            publisher.publish(
                TopicScheme(prefix).telemetry("smart_meter", "m"), payload("m", recent())
            )
            await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 1, what="one reading")
        for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
