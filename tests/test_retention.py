"""Partition maintenance: retention, archive and restore, drop; live beside a running daemon."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from partitions import Month, PartitionError, months_back, parse_age, retired
from storage.database import connect
from tests.cli import meterflow
from tests.databases import Database, SQLiteDatabase, count_readings, partition_tables
from tests.helpers import make_settings, payload, running_daemon, wait_until
from tests.mosquitto import Mosquitto

NOVEMBER = Month(2026, 11)


def test_retention_retires_only_months_older_than_the_newest_n() -> None:
    """keep 3 in November: September, October, November stay; August and before go."""
    months = [Month(2026, m) for m in range(1, 13)]
    assert retired(months, NOVEMBER, 3) == [Month(2026, m) for m in range(1, 9)]
    assert retired(months, Month(2027, 1), 14) == []
    assert months_back(Month(2026, 2), 3) == Month(2025, 11)


def test_retention_never_touches_the_current_or_previous_month() -> None:
    """Keeping fewer than 2 months is refused, whatever the caller asks."""
    with pytest.raises(PartitionError, match="at least 2"):
        retired([Month(2026, 10)], NOVEMBER, 1)


def test_ages_read_as_months() -> None:
    """24mo, 24m, 2y and 24 all mean 24 months; anything else is refused."""
    assert {parse_age(text) for text in ("24mo", "24m", "2y", "24", " 2Y ")} == {24}
    with pytest.raises(PartitionError):
        parse_age("two years")


def _at(month: Month, day: int = 10) -> datetime:
    return datetime(month.year, month.month, day, 12, 0, tzinfo=UTC)


async def _publish(publisher: Publisher, messages: list[tuple[str, bytes]]) -> None:
    for topic, body in messages:
        publisher.publish(topic, body)
    await asyncio.to_thread(publisher.wait_acknowledged)


@pytest.mark.mqtt
async def test_the_daemon_archives_old_months_and_query_can_include_them_again(
    broker: Mosquitto, publisher: Publisher, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """keep_months=3: a month 5 months back moves to its own file, out of energy_data.

    `query sql --include-archive` sees it again, and the daemon goes on storing readings,
    even a late one for the archived month.
    """
    current = Month.of(datetime.now(UTC))
    old = months_back(current, 5)
    archive_dir = tmp_path / "archive"
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    settings = make_settings(
        broker.url,
        db_path,
        prefix,
        **{
            "retention.keep_months": 3,
            "retention.archive_dir": str(archive_dir),
            "retention.interval_s": 0.2,
        },
    )
    archived = archive_dir / f"{old.table_name}.db"
    async with running_daemon(settings) as daemon:
        await _publish(publisher, [(topic, payload("m-1", _at(old, d))) for d in range(1, 8)])
        await _publish(publisher, [(topic, payload("m-1", datetime.now(UTC) - timedelta(1)))])
        await wait_until(lambda: daemon.stats.stored == 8, what="8 readings")
        await wait_until(archived.exists, what="the old month archived")
        await wait_until(
            lambda: old.table_name not in partition_tables(SQLiteDatabase(db_path)),
            what="the old month out of the live database",
        )
        await _publish(publisher, [(topic, payload("m-1", _at(old, 20)))])
        await wait_until(lambda: daemon.stats.stored == 9, what="the late reading")
        assert daemon.stats.rejected.total() == 0

    url = f"sqlite:///{db_path}"
    count = "SELECT count(*) AS n FROM energy_data"
    shown = await asyncio.to_thread(meterflow, "query", "sql", count, "--format", "json",
                                    "--db", url)  # fmt: skip
    live = json.loads(shown.output)
    everything = await asyncio.to_thread(
        meterflow, "query", "sql", count, "--include-archive", "--archive-dir",
        str(archive_dir), "--format", "json", "--db", url,
    )  # fmt: skip
    assert everything.exit_code == 0, everything.output
    # The late reading made the month a new partition; the archive still holds the seven.
    assert live == [{"n": 2}]
    assert json.loads(everything.output) == [{"n": 9}]


def test_archive_then_restore_brings_every_reading_back_and_sets_the_file_aside(
    database: Database, tmp_path: Path
) -> None:
    """archive MONTH --to DIR, then restore FILE: same rows as before, file renamed."""
    month = Month(2025, 3)
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", database.url)
    meterflow("partitions", "create", "--ahead", "0", "--db", database.url)
    _insert_readings(database, month, 31)
    before = count_readings(database)

    archived = meterflow(
        "partitions", "archive", str(month), "--to", str(tmp_path), "--db", database.url
    )
    assert archived.exit_code == 0, archived.output
    [archive] = tmp_path.glob(f"{month.table_name}.*")
    assert month.table_name not in partition_tables(database)
    assert count_readings(database) == before - 31

    restored = meterflow("partitions", "restore", str(archive), "--db", database.url)
    assert restored.output == f"restored {month}: 31 readings added\n"
    assert count_readings(database) == before
    assert not archive.exists()
    assert archive.with_name(archive.name + ".restored").exists()


def test_drop_older_than_deletes_old_months_only(database: Database) -> None:
    """drop --older-than 3mo --yes removes months before the newest three, nothing newer."""
    current = Month.of(datetime.now(UTC))
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", database.url)
    for back in (0, 2, 3, 7):
        _insert_readings(database, months_back(current, back), 2)
    result = meterflow("partitions", "drop", "--older-than", "3mo", "--yes", "--db", database.url)
    assert result.exit_code == 0, result.output
    gone = {months_back(current, 3).table_name, months_back(current, 7).table_name}
    assert not gone & partition_tables(database)
    assert months_back(current, 2).table_name in partition_tables(database)
    assert count_readings(database) == 4


def test_partitions_list_shows_rows_size_and_reading_range(database: Database) -> None:
    """One line per month with its readings, size and first/last reading time."""
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", database.url)
    _insert_readings(database, Month(2025, 3), 5)
    listed = json.loads(
        meterflow("partitions", "list", "--format", "json", "--db", database.url).output
    )
    march = next(p for p in listed if p["month"] == "2025-03")
    assert march["readings"] == 5
    assert march["size"] > 0
    assert march["first_reading"].startswith("2025-03-01T12:00:00")
    assert march["last_reading"].startswith("2025-03-05T12:00:00")


def test_query_sql_refuses_writes_and_attach(database: Database) -> None:
    """DELETE, UPDATE, DROP, CREATE and a PRAGMA that sets something are refused as writes;
    ATTACH and a wrong query with the database's reason, never a driver's class name."""
    meterflow("partitions", "create", "--ahead", "0", "--db", database.url)
    writes = [
        "DELETE FROM iot_devices",
        "UPDATE iot_devices SET status = 'error'",
        "DROP TABLE iot_devices",
        "CREATE TABLE t (x integer)",
    ]
    if database.kind == "sqlite":
        writes.append("PRAGMA journal_mode = DELETE")
    for statement in writes:
        result = meterflow("query", "sql", statement, "--db", database.url)
        assert result.exit_code == 1, statement
        assert result.stderr == "Error: read-only: writes are refused (`query sql` only reads)\n"
    for statement in ("ATTACH DATABASE '/tmp/x.db' AS x", "SELECT nonsense FROM iot_devices"):
        result = meterflow("query", "sql", statement, "--db", database.url)
        assert result.exit_code == 1, statement
        assert result.stderr.startswith("Error: query refused: "), result.stderr
        assert "<class" not in result.stderr


def _insert_readings(database: Database, month: Month, days: int) -> None:
    """Readings at noon on the first `days` days of `month`, written by SQL, not the daemon."""
    asyncio.run(ensure_partition(database.url, month))
    zone = "" if database.kind == "sqlite" else "+00:00"
    values = ", ".join(
        f"('m-1', 'consumption', 0.5, 1.0, '{_at(month, day):%Y-%m-%d %H:%M:%S}{zone}', "
        "'good', CURRENT_TIMESTAMP)"
        for day in range(1, days + 1)
    )
    # PostgreSQL numbers rows (identity) only when they go through the parent table.
    table = month.table_name if database.kind == "sqlite" else "energy_data"
    database.execute(
        f"INSERT INTO {table} (device_id, data_type, energy_amount, "
        f"instantaneous_power, recorded_at, quality, created_at) VALUES {values}"
    )


async def ensure_partition(url: str, month: Month) -> None:
    async with connect(url) as database, database.conn.begin():
        await database.backend.partitions.ensure(database.conn, [month])


@pytest.mark.mqtt
async def test_a_month_archived_behind_the_daemons_back_is_recreated_by_its_next_reading(
    broker: Mosquitto, publisher: Publisher, database: Database, prefix: str, tmp_path: Path
) -> None:
    """`partitions archive` from another process, then a late reading: stored, not refused."""
    month = Month(2025, 3)
    topic = TopicScheme(prefix).telemetry("smart_meter", "m-1")
    async with running_daemon(make_settings(broker.url, database.url, prefix)) as daemon:
        await _publish(publisher, [(topic, payload("m-1", _at(month, 1)))])
        await wait_until(lambda: daemon.stats.stored == 1, what="the first reading")
        archived = await asyncio.to_thread(
            meterflow, "partitions", "archive", str(month), "--to", str(tmp_path),
            "--db", database.url,
        )  # fmt: skip
        assert archived.exit_code == 0, archived.output
        await _publish(publisher, [(topic, payload("m-1", _at(month, 2)))])
        await wait_until(lambda: daemon.stats.stored == 2, what="the late reading")
    assert daemon.stats.rejected.total() == 0
    assert count_readings(database) == 1
