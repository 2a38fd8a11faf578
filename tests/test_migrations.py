"""Schema versions: created on an empty database, upgraded on request, refused otherwise."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import SCHEMA_VERSION, BatchWriter, Reading, WriteBatch, open_engine
from storage.registry import Registration, register
from tests.databases import Database, PostgresDatabase, SQLiteDatabase, partition_tables
from tests.process import METERFLOW

ROLLUP_TABLES = (("energy_hourly", "hour"), ("energy_daily", "day"), ("energy_monthly", "month"))


def create_schema(database: Database) -> None:
    async def start_once() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url):
            pass
        await engine.dispose()

    asyncio.run(start_once())


def meterflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METERFLOW, *args], capture_output=True, text=True, timeout=60, check=False
    )


def refuses_to_run(database: Database) -> str:
    """Start `meterflow run` on the database; it must exit with an error. Return the error."""
    done = meterflow("run", "--db", database.url, "--broker", "mqtt://127.0.0.1:9")
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_an_empty_database_gets_the_current_schema_on_first_start(database: Database) -> None:
    """No upgrade step is needed for a new database: the daemon records the version it made."""
    create_schema(database)
    assert database.query("SELECT max(version) FROM meterflow_schema") == [(SCHEMA_VERSION,)]


def test_an_outdated_schema_is_refused_until_db_upgrade_runs(database: Database) -> None:
    """A database from before versioning: `run` names the command; after it, all is well."""
    create_schema(database)
    database.execute("DROP TABLE meterflow_schema")
    error = refuses_to_run(database)
    assert f"database schema is version 0, meterflow needs {SCHEMA_VERSION}" in error
    assert f"run `meterflow db upgrade --db {database.url}` first" in error

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema is at version {SCHEMA_VERSION}" in upgraded.stdout
    assert database.query("SELECT max(version) FROM meterflow_schema") == [(SCHEMA_VERSION,)]
    create_schema(database)


def test_a_newer_schema_is_refused(database: Database) -> None:
    """A database written by a newer meterflow is not touched by an older one."""
    create_schema(database)
    database.execute("INSERT INTO meterflow_schema (version) VALUES (99)")
    assert "this meterflow is older than the database" in refuses_to_run(database)


async def test_daemons_starting_together_on_an_empty_database_create_it_once(
    database: Database,
) -> None:
    """Three writers opening a new database at the same moment: one schema, each version once."""

    async def open_writer() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url):
            pass
        await engine.dispose()

    await asyncio.gather(*(open_writer() for _ in range(3)))
    versions = database.query("SELECT version FROM meterflow_schema ORDER BY version")
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def _as_version_1(database: Database) -> None:
    """Turn a current database back into schema version 1: measures NOT NULL, no counters."""
    database.execute("DROP TABLE meter_counters")
    database.execute("DELETE FROM meterflow_schema WHERE version > 1")
    if database.kind == "postgres":
        database.execute(
            "ALTER TABLE energy_data ALTER COLUMN energy_amount SET NOT NULL, "
            "ALTER COLUMN instantaneous_power SET NOT NULL"
        )
        return
    for table in sorted(partition_tables(database)):
        [(ddl,)] = database.query(f"SELECT sql FROM sqlite_master WHERE name = '{table}'")
        old = (
            ddl.replace("energy_amount FLOAT,", "energy_amount FLOAT NOT NULL,")
            .replace("instantaneous_power FLOAT,", "instantaneous_power FLOAT NOT NULL,")
            .replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}_old", 1)
        )
        assert old != ddl
        database.execute(old)
        database.execute(f"INSERT INTO {table}_old SELECT * FROM {table}")
        database.execute("DROP VIEW IF EXISTS energy_data")
        database.execute(f"DROP TABLE {table}")
        database.execute(f"ALTER TABLE {table}_old RENAME TO {table}")
    selects = " UNION ALL ".join(f"SELECT * FROM {t}" for t in sorted(partition_tables(database)))
    database.execute(f"CREATE VIEW energy_data AS {selects}")


def test_upgrading_from_version_1_keeps_every_reading_and_allows_partial_ones(
    database: Database,
) -> None:
    """v1 -> v2: readings kept, energy and power may be NULL, meter_counters exists."""

    async def store() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            when = datetime(2025, 6, 1, tzinfo=UTC)
            await writer.write(WriteBatch([Reading("t", "m-1", "smart_meter", when, 0.5, 2.0)]))
        await engine.dispose()

    asyncio.run(store())
    _as_version_1(database)
    assert "database schema is version 1" in refuses_to_run(database)

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied schema versions 2" in upgraded.stdout
    assert database.query("SELECT energy_amount, instantaneous_power FROM energy_data") == [
        (0.5, 2.0)
    ]

    async def store_partial() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            when = datetime(2025, 6, 2, tzinfo=UTC)
            partial = Reading("t", "m-1", "smart_meter", when, None, 1.0)
            await writer.write(WriteBatch([partial]))
        await engine.dispose()

    asyncio.run(store_partial())
    assert database.query("SELECT count(*), count(energy_amount) FROM energy_data") == [(2, 1)]
    assert database.query("SELECT count(*) FROM meter_counters") == [(0,)]


@pytest.mark.postgres
def test_upgrading_postgres_to_version_4_drops_the_device_key_and_slims_rollup_indexes(
    postgres: PostgresDatabase,
) -> None:
    """v3 -> v4 on PostgreSQL: readings lose their foreign key, rollups their covering
    index and full pages, so a batch's rollup updates can be made in place."""
    database = postgres
    create_schema(database)
    database.execute(
        "ALTER TABLE energy_data ADD CONSTRAINT fk_energy_data_device "
        "FOREIGN KEY (device_id) REFERENCES iot_devices (device_id)"
    )
    for table, bucket in ROLLUP_TABLES:
        database.execute(f"DROP INDEX ix_{table}_{bucket}")
        database.execute(
            f"CREATE INDEX ix_{table}_{bucket} ON {table} ({bucket}, device_id, data_type, "
            "energy_kwh)"
        )
        database.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 4")
    assert "database schema is version 3" in refuses_to_run(database)

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied schema versions 4" in upgraded.stdout
    assert database.query("SELECT conname FROM pg_constraint WHERE contype = 'f'") == []
    for table, bucket in ROLLUP_TABLES:
        assert database.query(
            f"SELECT indexdef LIKE '%({bucket}, device_id, data_type)' FROM pg_indexes "
            f"WHERE indexname = 'ix_{table}_{bucket}'"
        ) == [(True,)]
        assert database.query(f"SELECT reloptions FROM pg_class WHERE relname = '{table}'") == [
            (["fillfactor=70"],)
        ]
    create_schema(database)


def test_upgrading_to_version_5_adds_the_counters_held_value_and_the_devices_power(
    database: Database,
) -> None:
    """v4 -> v5: meter_counters gains low_kwh, low_at and replaced, iot_devices
    max_power_kw."""
    create_schema(database)
    database.execute("ALTER TABLE meter_counters DROP COLUMN low_kwh")
    database.execute("ALTER TABLE meter_counters DROP COLUMN low_at")
    database.execute("ALTER TABLE meter_counters DROP COLUMN replaced")
    database.execute("ALTER TABLE iot_devices DROP COLUMN max_power_kw")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 5")
    assert "database schema is version 4" in refuses_to_run(database)
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied schema versions 5, 6" in upgraded.stdout
    assert database.query("SELECT low_kwh, low_at, replaced FROM meter_counters") == []
    assert database.query("SELECT max_power_kw FROM iot_devices") == []


def test_upgrading_to_version_6_adds_interval_starts_and_fills_the_15_minute_rollup(
    database: Database,
) -> None:
    """v5 -> v6: readings gain interval_start (NULL for those stored before), and
    energy_15min is filled from the readings stored."""

    async def store(minute: int) -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            when = datetime(2025, 6, 1, 10, minute, tzinfo=UTC)
            await writer.write(WriteBatch([Reading("t", "m-1", "smart_meter", when, 0.5, 2.0)]))
        await engine.dispose()

    for minute in (5, 10, 20):
        asyncio.run(store(minute))
    quarters = "SELECT quarter_hour, energy_kwh, readings FROM energy_15min ORDER BY 1"
    expected = database.query(quarters)
    assert [row[1:] for row in expected] == [(1.0, 2), (0.5, 1)]
    if database.kind == "postgres":
        database.execute("ALTER TABLE energy_data DROP COLUMN interval_start")
    else:
        database.execute("DROP VIEW energy_data")
        tables = sorted(partition_tables(database))
        for table in tables:
            database.execute(f"ALTER TABLE {table} DROP COLUMN interval_start")
        selects = " UNION ALL ".join(f"SELECT * FROM {table}" for table in tables)
        database.execute(f"CREATE VIEW energy_data AS {selects}")
    database.execute("DROP VIEW user_energy_summary")
    database.execute("DROP TABLE energy_15min")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 6")
    assert "database schema is version 5" in refuses_to_run(database)

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied schema versions 6" in upgraded.stdout
    assert database.query(quarters) == expected
    assert database.query("SELECT count(interval_start) FROM energy_data") == [(0,)]
    asyncio.run(store(40))
    assert database.query("SELECT count(*) FROM energy_data") == [(4,)]
    verified = meterflow("db", "verify", "--db", database.url)
    assert verified.returncode == 0, verified.stdout


def test_upgrading_to_version_7_gives_each_owned_device_its_owner_from_the_beginning(
    database: Database,
) -> None:
    """v6 -> v7: device_owners holds each registered owner from the beginning, so every
    reading stored before stays its owner's, and the summary view follows it."""
    registered = meterflow("devices", "register", "m-1", "--type", "smart_meter",
                           "--user", "u-1", "--db", database.url)  # fmt: skip
    assert registered.returncode == 0, registered.stderr

    async def store() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            when = datetime(2025, 6, 1, 10, 5, tzinfo=UTC)
            await writer.write(
                WriteBatch([Reading("t", d, "smart_meter", when, 0.5, 2.0) for d in ("m-1", "m-2")])
            )
        await engine.dispose()

    asyncio.run(store())
    database.execute("DROP VIEW user_energy_summary")
    database.execute("DROP TABLE device_owners")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 7")
    assert "database schema is version 6" in refuses_to_run(database)

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied schema versions 7" in upgraded.stdout
    assert database.query("SELECT device_id, user_id FROM device_owners") == [("m-1", "u-1")]
    assert database.query("SELECT user_id, consumption_kwh FROM user_energy_summary") == [
        ("u-1", 0.5)
    ]


def test_upgrading_sqlite_to_version_8_covers_the_rollup_indexes(tmp_path: Path) -> None:
    """v7 -> v8 on SQLite: each rollup's bucket index holds every measure, so a question
    over every device is answered from the index alone."""
    database = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    create_schema(database)
    database.execute("DROP INDEX ix_energy_15min_quarter_hour")
    database.execute(
        "CREATE INDEX ix_energy_15min_quarter_hour ON energy_15min "
        "(quarter_hour, device_id, data_type, energy_kwh)"
    )
    database.execute("DELETE FROM meterflow_schema WHERE version >= 8")
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert "applied schema versions 8" in upgraded.stdout, upgraded.stderr
    plan = database.query(
        "EXPLAIN QUERY PLAN SELECT quarter_hour, sum(energy_kwh), max(power_max), "
        "sum(readings) FROM energy_15min WHERE quarter_hour >= '2026-01-01' GROUP BY 1"
    )
    assert any("COVERING INDEX ix_energy_15min_quarter_hour" in str(row) for row in plan)


def test_upgrading_to_version_9_keeps_the_summary_in_utc_days_until_zones_are_recorded(
    database: Database,
) -> None:
    """v8 -> v9: the zone tables hold UTC for everyone and the summary view counts over
    them, as v8's UTC view did, until a command records the settings' zones."""
    create_schema(database)
    database.execute("DROP VIEW user_energy_summary")
    database.execute("DROP TABLE user_zones")
    database.execute("DROP TABLE zone_offsets")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 9")
    assert "database schema is version 8" in refuses_to_run(database)

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert "applied schema versions 9" in upgraded.stdout, upgraded.stderr
    assert database.query("SELECT user_id, zone FROM user_zones") == [("", "UTC")]
    assert database.query("SELECT zone, offset_s FROM zone_offsets") == [("UTC", 0)]
    assert database.query("SELECT count(*) FROM user_energy_summary") == [(0,)]


def _as_version_9(database: Database) -> None:
    """Turn a current database back into schema version 9: two device types, and readings
    without a state of charge."""
    old_check = "device_type IN ('smart_meter', 'solar_panel')"
    database.execute("DELETE FROM meterflow_schema WHERE version >= 10")
    if database.kind == "postgres":
        database.execute("ALTER TABLE energy_data DROP COLUMN state_of_charge")
        database.execute(
            "ALTER TABLE iot_devices DROP CONSTRAINT ck_iot_devices_type, "
            f"ADD CONSTRAINT ck_iot_devices_type CHECK ({old_check})"
        )
        return
    assert isinstance(database, SQLiteDatabase)
    # SQLite's own way to change a table's constraints: a copy in the old shape replaces it.
    with closing(sqlite3.connect(database.path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN")
        conn.execute("DROP VIEW energy_data")
        # Version 12 makes it again; it reads iot_devices, which is replaced here.
        conn.execute("DROP VIEW user_energy_summary")
        tables = sorted(partition_tables(database))
        for table in tables:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN state_of_charge")
        selects = " UNION ALL ".join(f"SELECT * FROM {table}" for table in tables)
        conn.execute(f"CREATE VIEW energy_data AS {selects}")
        [(ddl,)] = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'iot_devices'")
        old = re.sub(r"device_type IN \([^)]*\)", old_check, ddl)
        assert old != ddl
        conn.execute(old.replace("CREATE TABLE iot_devices", "CREATE TABLE iot_devices_v9", 1))
        conn.execute("INSERT INTO iot_devices_v9 SELECT * FROM iot_devices")
        conn.execute("DROP TABLE iot_devices")
        conn.execute("ALTER TABLE iot_devices_v9 RENAME TO iot_devices")
        conn.execute("COMMIT")


def test_upgrading_to_version_10_admits_four_device_types_and_a_state_of_charge(
    database: Database,
) -> None:
    """v9 -> v10: the registry takes batteries, inverters, EV chargers and heat pumps, and
    readings keep a state of charge apart from a device's own battery level."""
    when = datetime(2026, 6, 1, tzinfo=UTC)

    async def store(*readings: Reading) -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            await writer.write(WriteBatch(list(readings)))
        await engine.dispose()

    asyncio.run(store(Reading("t", "m-1", "smart_meter", when, 0.1, 0.3)))
    _as_version_9(database)
    assert "database schema is version 9" in refuses_to_run(database)
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert "applied schema versions 10" in upgraded.stdout, upgraded.stderr

    battery = Reading("t", "b-1", "battery_storage", when, 0.4, 1.6, state_of_charge=64.5)
    pump = Reading("t", "h-1", "heat_pump", when, 0.2, 0.8, battery_pct=90.0)
    asyncio.run(store(battery, pump))
    assert database.query(
        "SELECT device_type, battery_level FROM iot_devices ORDER BY device_id"
    ) == [("battery_storage", None), ("heat_pump", 90.0), ("smart_meter", None)]
    assert database.query(
        "SELECT device_id, state_of_charge, battery_pct FROM energy_data ORDER BY device_id"
    ) == [("b-1", 64.5, None), ("h-1", None, 90.0), ("m-1", None, None)]
    if database.kind == "sqlite":
        assert database.query("PRAGMA integrity_check") == [("ok",)]
        assert database.query("PRAGMA foreign_key_check") == []


def test_upgrading_to_version_12_counts_each_users_home_by_its_devices_roles(
    database: Database,
) -> None:
    """v11 -> v12: user_energy_summary no longer adds a heat pump's submeter to the grid
    meter that measured its energy too."""
    when = datetime(2026, 6, 1, 8, tzinfo=UTC)

    async def store() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await register(conn, [Registration("g-1", "smart_meter", user_id="u-1"),
                                      Registration("hp-1", "heat_pump", user_id="u-1")],
                               when)  # fmt: skip
            await writer.write(
                WriteBatch(
                    [
                        Reading("t", "g-1", "smart_meter", when, 2.5, 10.0),
                        Reading("t", "hp-1", "heat_pump", when, 2.0, 8.0),
                    ]
                )
            )
        await engine.dispose()

    asyncio.run(store())
    # What version 11's view said: both devices' energy added up.
    database.execute("DROP VIEW user_energy_summary")
    database.execute("CREATE VIEW user_energy_summary AS SELECT 'u-1' AS user_id, "
                     "4.5 AS consumption_kwh, 0.0 AS production_kwh, 4.5 AS net_kwh")  # fmt: skip
    database.execute("DELETE FROM meterflow_schema WHERE version >= 12")
    assert "database schema is version 11" in refuses_to_run(database)
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert "applied schema versions 12" in upgraded.stdout, upgraded.stderr
    assert database.query(
        "SELECT user_id, consumption_kwh, production_kwh, net_kwh FROM user_energy_summary"
    ) == [("u-1", 2.5, 0.0, 2.5)]


def test_upgrading_to_version_14_starts_an_empty_audit_trail(database: Database) -> None:
    """v13 -> v14: `audit_log` is made; the trail begins with what comes after."""
    create_schema(database)
    database.execute("DROP TABLE audit_log")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 14")
    assert "database schema is version 13" in refuses_to_run(database)
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert "applied schema versions 14" in upgraded.stdout, upgraded.stderr
    assert database.query("SELECT count(*) FROM audit_log") == [(0,)]
