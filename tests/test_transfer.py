"""meterflow migrate: a SQLite database copied into PostgreSQL, verified, and resumable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from storage import BatchWriter, DeadLetter, Reading, WriteBatch, open_engine, registry
from storage.registry import Registration
from tests.databases import Database, SQLiteDatabase, count_readings
from tests.test_migrations import meterflow

pytestmark = pytest.mark.postgres

START = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def fill(database: Database) -> None:
    """12,000 readings of 20 devices from 31 January into February, and four dead letters."""

    async def write() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            for start in range(0, 12_000, 3000):
                readings = [
                    Reading(
                        "t",
                        f"d{n % 20}",
                        "solar_panel" if n % 20 == 0 else "smart_meter",
                        START + timedelta(minutes=15 * (n // 20)),
                        0.001 * n,
                        1.0 + n / 7,
                        battery_pct=50.0 if n % 3 == 0 else None,
                        metadata={"n": n} if n % 5 == 0 else None,
                    )
                    for n in range(start, start + 3000)
                ]
                letter = DeadLetter(
                    "t", b"bad", f"reason {start}", START + timedelta(seconds=start)
                )
                await writer.write(WriteBatch(readings, [letter]))
        await engine.dispose()

    asyncio.run(write())


def migrate(source: Database, target: Database) -> str:
    done = meterflow("migrate", "--from", source.url, "--to", target.url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sqlite_copies_into_postgres_and_verifies_every_month(
    tmp_path: Path, postgres: Database
) -> None:
    """Devices, 12,000 readings over two months and dead letters arrive; checksums agree."""
    source = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    fill(source)
    output = migrate(source, postgres)
    assert "copied 20 devices, 12000 readings, 4 new dead letters" in output
    assert "verified: every month has equal counts and checksums" in output
    assert [line for line in output.splitlines() if line.startswith("2026-")] == [
        "2026-01: 960 -> 960 rows, ok",
        "2026-02: 11040 -> 11040 rows, ok",
    ]
    assert count_readings(postgres) == 12_000
    assert sorted(postgres.query("SELECT device_id, battery_level FROM iot_devices")) == sorted(
        source.query("SELECT device_id, battery_level FROM iot_devices")
    )
    assert postgres.query("SELECT count(*) FROM energy_data WHERE metadata IS NOT NULL") == [
        (2400,)
    ]


def test_the_rollups_arrive_whole_and_add_up_to_the_copied_readings(
    tmp_path: Path, postgres: Database
) -> None:
    """Every rollup row is copied as it was, months whose readings are gone included, and
    `db verify` on the copy finds each equal to its readings."""
    source = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    fill(source)
    archived = meterflow(
        "partitions", "archive", "2026-01", "--to", str(tmp_path / "archive"), "--db", source.url
    )
    assert archived.returncode == 0, archived.stderr
    output = migrate(source, postgres)
    assert [line for line in output.splitlines() if line.startswith("energy_")] == [
        "energy_15min: 12000 -> 12000 rows, ok",
        "energy_hourly: 3000 -> 3000 rows, ok",
        "energy_daily: 140 -> 140 rows, ok",
        "energy_monthly: 40 -> 40 rows, ok",
    ]
    assert "the rollups add up to the readings" in output
    totals = "SELECT round(sum(energy_kwh)::numeric, 6), sum(readings) FROM energy_monthly"
    assert postgres.query(totals) == [(Decimal("71994.000000"), 12_000)]
    verified = meterflow("db", "verify", "--db", postgres.url)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.splitlines() == [
        "2026-02: rollups match the readings",
        "2026-01: no readings to read (dropped, or archived where this database cannot "
        "query it); rollup rows kept, not checked",
        "cost and carbon match the rates",
    ]


def test_rollups_that_do_not_add_up_in_the_source_fail_the_verification(
    tmp_path: Path, postgres: Database
) -> None:
    """A copy of wrong totals is refused, naming the rows and the fix."""
    source = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    fill(source)
    source.execute("UPDATE energy_daily SET energy_kwh = energy_kwh * 2 WHERE device_id = 'd1'")
    done = meterflow("migrate", "--from", source.url, "--to", postgres.url)
    assert done.returncode == 1
    assert [line for line in done.stdout.splitlines() if line.startswith("  energy_daily d1")]
    assert "rebuild-rollups" in done.stderr


def test_an_interrupted_copy_is_finished_by_running_it_again(
    tmp_path: Path, postgres: Database
) -> None:
    """Rows missing on the target are copied again; nothing is copied twice."""
    source = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    fill(source)
    migrate(source, postgres)
    postgres.execute("DELETE FROM energy_data WHERE device_id = 'd3'")
    postgres.execute("DELETE FROM dead_letters WHERE reason = 'reason 0'")
    output = migrate(source, postgres)
    assert "1 new dead letters" in output
    assert "verified" in output
    assert count_readings(postgres) == 12_000
    assert postgres.query("SELECT count(*) FROM dead_letters") == [(4,)]


def test_owners_counters_and_spread_energy_arrive_and_verify(
    tmp_path: Path, postgres: Database
) -> None:
    """A plug's counter readings hours apart (their energy spread back over the hours),
    which changed owners midway: the copy has the same owners and counters, and per-user
    days and `db verify` agree with the source."""
    source = SQLiteDatabase(tmp_path / "data" / "meterflow.db")

    async def write() -> None:
        engine = open_engine(source.url)
        async with BatchWriter(engine, url=source.url) as writer:
            for step, owner in enumerate(["u-1", "u-1", "u-2", "u-2"]):
                at = START + timedelta(hours=6 * step)
                async with engine.begin() as conn:
                    await registry.register(
                        conn, [Registration("plug-1", "smart_meter", owner)], at
                    )
                plug = Reading("t", "plug-1", "smart_meter", at + timedelta(minutes=5), None, 0.5,
                               counter="import", counter_kwh=100 + 3 * step)  # fmt: skip
                await writer.write(WriteBatch([plug]))
        await engine.dispose()

    asyncio.run(write())
    migrate(source, postgres)
    for sql in (
        "SELECT device_id, user_id FROM device_owners ORDER BY since",
        "SELECT device_id, counter, value_kwh FROM meter_counters",
        "SELECT count(interval_start), sum(energy_amount) FROM energy_data",
    ):
        assert postgres.query(sql) == source.query(sql), sql
    verified = meterflow("db", "verify", "--db", postgres.url)
    assert verified.returncode == 0, verified.stdout
    for user in ("u-1", "u-2"):
        ask = ("query", "energy", "--user", user, "--from", "2026-01-31", "--to", "2026-02-01",
               "--format", "csv")  # fmt: skip
        here, there = meterflow(*ask, "--db", source.url), meterflow(*ask, "--db", postgres.url)
        assert here.returncode == 0, here.stderr
        assert here.stdout == there.stdout
