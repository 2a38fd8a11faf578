"""`meterflow privacy erase`: a device's data gone from the database file, its WAL, its
free pages and the archived month files (read raw), the other device's totals untouched,
the rollups still right, and a restored backup erased again.

The two meters of test_privacy (every hour of 2 March and 2 April 2026, a counter and a
malformed message each); a query about the erased one is in the audit trail; March is
archived, then the database is backed up, then one meter is erased.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meterflow.publisher import Publisher
from storage import BatchWriter, DeadLetter, Reading, WriteBatch, open_engine
from storage.registry import Registration, register
from tests import test_privacy
from tests.cli import meterflow
from tests.databases import Database, SQLiteDatabase
from tests.helpers import make_settings, payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto

GONE, KEPT = "meter-ERASE-ME-7", "meter-keep-2"


def load(database: Database) -> None:
    test_privacy.load(database, GONE, KEPT)


def kept_totals(database: Database) -> list[tuple[object, ...]]:
    return database.query(
        "SELECT count(*), sum(energy_kwh) FROM energy_hourly WHERE device_id = 'meter-keep-2'"
    )


@pytest.fixture
def erasure_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "erasures.jsonl"
    monkeypatch.setenv("METERFLOW_PRIVACY__ERASURE_LOG", str(log))
    return log


def test_an_erased_device_leaves_no_byte_behind_and_a_restore_erases_it_again(
    tmp_path: Path, erasure_log: Path
) -> None:
    """SQLite, read raw: the file, its WAL and the archive hold no byte of the id."""
    db = tmp_path / "data" / "meterflow.db"
    url = f"sqlite:///{db}"
    meterflow("devices", "list", "--db", url)  # creates the schema
    database = SQLiteDatabase(db)
    load(database)
    meterflow("query", "energy", "--device", GONE, "--db", url, "--from", "2026-04-02",
              "--to", "2026-04-02", "--tz", "UTC")  # fmt: skip
    archive = tmp_path / "archive"
    assert meterflow("partitions", "archive", "2026-03", "--to", str(archive),
                     "--db", url).exit_code == 0  # fmt: skip
    assert meterflow("backup", "--to", str(tmp_path / "backups"), "--db", url).exit_code == 0
    backup = next((tmp_path / "backups").iterdir())
    before = kept_totals(database)

    dry = meterflow("privacy", "erase", "--device", GONE, "--dry-run", "--archive-dir",
                    str(archive), "--db", url)  # fmt: skip
    assert "energy_data: would erase 24 rows" in dry.output, dry.output  # April's
    assert "energy_data_2026_03.db: would erase 24 readings" in dry.output
    assert database.query(f"SELECT count(*) FROM energy_data WHERE device_id = '{GONE}'") == [
        (24,)
    ]  # fmt: skip

    # A connection held open, as a running daemon's is: the WAL stays, with whatever
    # frames no checkpoint has reset.
    with closing(sqlite3.connect(db)) as daemon:
        daemon.execute("SELECT count(*) FROM iot_devices").fetchall()
        done = meterflow("privacy", "erase", "--device", GONE, "--archive-dir", str(archive),
                         "--db", url)  # fmt: skip
        assert done.exit_code == 0, done.output
        assert "dead_letters: erased 1 rows" in done.output
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        for path in [db, wal, *archive.iterdir()]:
            assert GONE.encode() not in path.read_bytes(), path
    assert kept_totals(database) == before
    verified = meterflow("db", "verify", "--db", url, "--archive-dir", str(archive))
    assert verified.exit_code == 0, verified.output
    assert GONE in erasure_log.read_text()  # the log, outside the database, names it

    restored = meterflow("restore", str(backup), "--force", "--db", url)
    assert restored.exit_code == 0, restored.output
    assert "applied 1 logged erasures again" in restored.output
    assert GONE.encode() not in db.read_bytes()
    assert database.query(f"SELECT count(*) FROM energy_15min WHERE device_id = '{GONE}'") == [
        (0,)
    ]  # fmt: skip
    assert kept_totals(database) == before


def test_erasing_a_device_on_either_database_keeps_the_others_and_the_rollups_right(
    database: Database, tmp_path: Path, erasure_log: Path
) -> None:
    """Readings, rollups, registry, counters and dead letters of the device go; db verify
    passes; the other device's totals are as they were."""
    load(database)
    before = kept_totals(database)
    done = meterflow("privacy", "erase", "--device", GONE, "--archive-dir",
                     str(tmp_path / "none"), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    for table in ("energy_data", "energy_15min", "energy_monthly", "iot_devices",
                  "device_owners"):  # fmt: skip
        assert database.query(f"SELECT count(*) FROM {table} WHERE device_id = '{GONE}'") == [
            (0,)
        ], table  # fmt: skip
    assert [topic for (topic,) in database.query("SELECT topic FROM dead_letters")] == [
        f"meters/smart_meter/{KEPT}/telemetry"
    ]  # fmt: skip
    assert kept_totals(database) == before
    assert meterflow("db", "verify", "--db", database.url).exit_code == 0
    assert erasure_log.exists()


@pytest.mark.mqtt
async def test_an_erasure_while_the_daemon_runs_leaves_later_readings_to_a_new_device(
    broker: Mosquitto, publisher: Publisher, tmp_path: Path, prefix: str, erasure_log: Path
) -> None:
    """The daemon keeps its connection while the erasure scrubs the file under it; the
    erased meter's next readings register it afresh, with nothing of before."""
    db = tmp_path / "data" / "meterflow.db"
    settings = make_settings(broker.url, db, prefix, **{"batch.max_delay_ms": 50})
    start = recent(3 * 3600).replace(minute=0, second=0, microsecond=0)

    def publish(device: str, first: int, count: int) -> None:
        for minute in range(first, first + count):
            at = start + timedelta(minutes=minute)
            publisher.publish(f"{prefix}/smart_meter/{device}/telemetry", payload(device, at))

    async with running_daemon(settings) as daemon:
        publish(GONE, 0, 30)
        publish(KEPT, 0, 30)
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 60, what="60 readings")
        done = await asyncio.to_thread(
            meterflow, "privacy", "erase", "--device", GONE, "--db", f"sqlite:///{db}",
            "--archive-dir", str(tmp_path / "archive"),
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        for path in (db, db.with_name(db.name + "-wal")):
            assert GONE.encode() not in path.read_bytes(), path
        publish(GONE, 60, 5)
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 65, what="65 readings")
    database = SQLiteDatabase(db)
    assert database.query(
        f"SELECT count(*), min(recorded_at) >= '{start + timedelta(minutes=60):%Y-%m-%d %H:%M}' "
        f"FROM energy_data WHERE device_id = '{GONE}'"
    ) == [(5, 1)]
    assert database.query(f"SELECT count(*) FROM energy_data WHERE device_id = '{KEPT}'") == [
        (30,)
    ]  # fmt: skip
    verified = await asyncio.to_thread(meterflow, "db", "verify", "--db", f"sqlite:///{db}")
    assert verified.exit_code == 0, verified.output


def test_an_ids_underscore_is_no_wildcard(database: Database, erasure_log: Path) -> None:
    """Erasing m_1 leaves mX1's dead letter, and m-10's: a topic level is matched whole."""

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            when = datetime(2026, 4, 2, tzinfo=UTC)
            await writer.write(WriteBatch([], [
                DeadLetter(f"meters/smart_meter/{device}/telemetry", b"{}", "empty", when)
                for device in ("m_1", "mX1", "m_10")
            ]))  # fmt: skip
        await engine.dispose()

    asyncio.run(go())
    done = meterflow("privacy", "erase", "--device", "m_1", "--db", database.url)
    assert done.exit_code == 0, done.output
    assert sorted(topic for (topic,) in database.query("SELECT topic FROM dead_letters")) == [
        "meters/smart_meter/mX1/telemetry", "meters/smart_meter/m_10/telemetry"
    ]  # fmt: skip


def test_erasing_a_user_keeps_the_next_owners_readings_of_a_device_they_sold(
    database: Database, erasure_log: Path
) -> None:
    """u-1 sold m-1 to u-3 on 3 April, whose readings of it follow: u-1's readings go,
    u-3's stay, April's monthly rollup of m-1 keeps u-3's part alone, u-1's ownership span
    is nobody's, and u-2's meter is untouched."""
    test_privacy.load(database)
    sold = datetime(2026, 4, 3, tzinfo=UTC)

    async def sell() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await register(conn, [Registration("m-1", "smart_meter", "u-3")], sold)
            later = sold + timedelta(hours=1)
            await writer.write(WriteBatch([
                Reading("t", "m-1", "smart_meter", later + timedelta(hours=h), 0.5, 2.0)
                for h in range(6)
            ]))  # fmt: skip
        await engine.dispose()

    asyncio.run(sell())
    assert database.query("SELECT count(*) FROM energy_data WHERE user_id = 'u-3'") == [(6,)]
    done = meterflow("privacy", "erase", "--user", "u-1", "--db", database.url)
    assert done.exit_code == 0, done.output
    assert database.query("SELECT count(*) FROM energy_data WHERE user_id = 'u-1'") == [(0,)]
    assert database.query("SELECT count(*) FROM energy_data WHERE user_id = 'u-3'") == [(6,)]
    assert database.query("SELECT count(*) FROM energy_data WHERE device_id = 'm-2'") == [(48,)]
    assert database.query(
        "SELECT energy_kwh FROM energy_monthly WHERE device_id = 'm-1'"
    ) == [(3.0,)]  # fmt: skip
    assert database.query(
        "SELECT user_id FROM device_owners WHERE device_id = 'm-1' ORDER BY since"
    ) == [(None,), ("u-3",)]
    assert database.query("SELECT user_id FROM iot_devices WHERE device_id = 'm-1'") == [
        ("u-3",)
    ]  # fmt: skip
    assert meterflow("db", "verify", "--db", database.url).exit_code == 0
