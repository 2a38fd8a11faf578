"""The daemon against a real Mosquitto and each real database: a SQLite file, PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from partitions import Month
from tests.databases import Database, as_utc, count_readings, partition_tables
from tests.helpers import make_settings, payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.mqtt


async def publish_all(publisher: Publisher, messages: list[tuple[str, bytes]]) -> None:
    for topic, body in messages:
        publisher.publish(topic, body)
    await asyncio.to_thread(publisher.wait_acknowledged)


async def test_every_published_reading_becomes_one_row(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """N readings published at QoS 1 from many devices end as exactly N rows."""
    scheme = TopicScheme(prefix)
    base = recent()
    messages = [
        (
            scheme.telemetry("smart_meter" if n % 3 else "solar_panel", f"dev-{n % 40}"),
            payload(f"dev-{n % 40}", base + timedelta(seconds=n)),
        )
        for n in range(1200)
    ]
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        await publish_all(publisher, messages)
        await wait_until(lambda: daemon.stats.stored == 1200, what="1200 rows stored")
    assert count_readings(database) == 1200
    assert database.query("SELECT count(*) FROM iot_devices") == [(40,)]
    kinds = dict(database.query("SELECT data_type, count(*) FROM energy_data GROUP BY 1"))
    assert kinds == {"consumption": 800, "production": 400}


async def test_readings_in_two_months_make_two_partitions_under_one_name(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """A reading in a new month creates that month's partition; energy_data spans both."""
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    october = datetime(2025, 10, 31, 23, 59, 59, tzinfo=UTC)
    november = datetime(2025, 11, 1, 0, 0, 1, tzinfo=UTC)
    settings = make_settings(broker.url, database.url, prefix)
    async with running_daemon(settings) as daemon:
        await publish_all(
            publisher, [(topic, payload("m-1", october)), (topic, payload("m-1", november))]
        )
        await wait_until(lambda: daemon.stats.stored == 2, what="both readings stored")
    assert {"energy_data_2025_10", "energy_data_2025_11"} <= partition_tables(database)
    assert database.query("SELECT count(*) FROM energy_data_2025_10") == [(1,)]
    assert database.query("SELECT count(*) FROM energy_data_2025_11") == [(1,)]
    times = database.query("SELECT recorded_at FROM energy_data ORDER BY recorded_at")
    assert [as_utc(at) for (at,) in times] == [october, november]


async def test_malformed_payload_becomes_a_dead_letter_and_later_messages_still_land(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """A bad message is stored with a readable reason; the good ones after it are stored."""
    scheme = TopicScheme(prefix)
    topic = scheme.telemetry("smart_meter", "m-1")
    base = recent()
    messages = [
        (topic, payload("m-1", base)),
        (topic, b"{not json"),
        (topic, payload("m-1", base + timedelta(seconds=1), energy=-3.0)),
        (f"{prefix}/toaster/t-1/telemetry", payload("t-1", base)),
        (topic, payload("m-1", base + timedelta(seconds=2))),
    ]
    settings = make_settings(broker.url, database.url, prefix)
    async with running_daemon(settings) as daemon:
        await publish_all(publisher, messages)
        await wait_until(lambda: daemon.stats.received == 5, what="all five messages")
        await wait_until(lambda: daemon.stats.rejected.total() == 3, what="three dead letters")
    assert count_readings(database) == 2
    letters = database.query("SELECT topic, payload, reason FROM dead_letters ORDER BY id")
    assert [(t, bytes(p)) for t, p, _ in letters] == [(t, p) for t, p in messages[1:4]]
    reasons = [reason for _, _, reason in letters]
    assert reasons[0].startswith("payload is not valid JSON")
    assert reasons[1] == "energy_kwh: Input should be greater than or equal to 0"
    assert reasons[2].startswith("unknown device type 'toaster'")


async def test_republished_reading_is_stored_once(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """The same reading published three times is one row; the others count as duplicates."""
    topic = TopicScheme(prefix).telemetry("solar_panel", "pv-1")
    body = payload("pv-1", recent(), irradiance_wm2=640.0)
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        for _ in range(3):
            await publish_all(publisher, [(topic, body)])
        await wait_until(
            lambda: daemon.stats.stored + daemon.stats.duplicates == 3, what="3 messages"
        )
    assert count_readings(database) == 1
    assert daemon.stats.duplicates == 2


async def test_device_last_seen_and_battery_follow_the_newest_reading(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """A late, older reading moves neither last_seen nor the battery level back."""
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    newest = recent(60)
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        await publish_all(publisher, [(topic, payload("m-1", newest, battery_pct=80.0))])
        await wait_until(lambda: daemon.stats.stored == 1, what="first reading")
        await publish_all(
            publisher,
            [
                (topic, payload("m-1", newest - timedelta(hours=1), battery_pct=95.0)),
                (topic, payload("m-1", newest + timedelta(seconds=30))),
            ],
        )
        await wait_until(lambda: daemon.stats.stored == 3, what="all three readings")
    [(last_seen, battery, status)] = database.query(
        "SELECT last_seen, battery_level, status FROM iot_devices WHERE device_id = 'm-1'"
    )
    assert (as_utc(last_seen), battery, status) == (newest + timedelta(seconds=30), 80.0, "active")


async def test_unregistered_device_is_rejected_when_configured(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """With unknown_devices = reject, an unregistered device's reading is a dead letter."""
    topic = TopicScheme(prefix).telemetry("smart_meter", "stranger")
    settings = make_settings(
        broker.url, database.url, prefix, **{"ingest.unknown_devices": "reject"}
    )
    async with running_daemon(settings) as daemon:
        await publish_all(publisher, [(topic, payload("stranger", recent()))])
        await wait_until(lambda: daemon.stats.rejected.total() == 1, what="the dead letter")
    assert count_readings(database) == 0
    assert database.query("SELECT count(*) FROM iot_devices") == [(0,)]
    assert database.query("SELECT reason FROM dead_letters") == [
        ("device 'stranger' is not registered and ingest.unknown_devices is 'reject'",)
    ]


async def test_this_month_and_three_ahead_have_partitions_from_start_up(
    broker: Mosquitto, database: Database, prefix: str
) -> None:
    """Before any reading arrives, the current month and the next three are partitioned."""
    month = Month.of(datetime.now(UTC))
    expected = set()
    for _ in range(4):
        expected.add(month.table_name)
        month = month.next()
    async with running_daemon(make_settings(broker.url, database.url, prefix)):
        await wait_until(lambda: expected <= partition_tables(database), what="4 partitions")
    assert count_readings(database) == 0


async def test_a_reading_two_years_late_gets_its_own_partition(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str
) -> None:
    """Backfilled data far in the past creates its month's partition and lands in it."""
    late = datetime.now(UTC).replace(microsecond=0) - timedelta(days=730)
    topic = TopicScheme(prefix).telemetry("solar_panel", "pv-9")
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        await publish_all(publisher, [(topic, payload("pv-9", late))])
        await wait_until(lambda: daemon.stats.stored == 1, what="the late reading")
    table = Month.of(late).table_name
    assert table in partition_tables(database)
    assert database.query(f"SELECT device_id FROM {table}") == [("pv-9",)]
