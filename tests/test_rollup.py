"""The hourly, daily and monthly rollups: kept in the batch's transaction, each reading once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import BatchWriter, Reading, WriteBatch, open_engine
from tests.databases import Database, as_utc
from tests.test_migrations import meterflow

H0 = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)  # the last hour of March: two partitions


def reading(device: str, minutes: float, energy: float | None, power: float | None) -> Reading:
    return Reading("t", device, "smart_meter", H0 + timedelta(minutes=minutes), energy, power)


async def write(database: Database, *batches: list[Reading]) -> None:
    engine = open_engine(database.url)
    async with BatchWriter(engine, url=database.url) as writer:
        for batch in batches:
            await writer.write(WriteBatch(batch))
    await engine.dispose()


Hourly = tuple[float, float | None, float, int, int]


def hourly(
    database: Database, table: str = "energy_hourly", bucket: str = "hour"
) -> dict[tuple[str, datetime], Hourly]:
    """(energy, peak power, power sum, power values, readings) per device and bucket."""
    rows = database.query(
        f"SELECT device_id, {bucket}, energy_kwh, power_max, power_sum, power_count, readings "
        f"FROM {table}"
    )
    return {
        (device, as_utc(hour)): (round(e, 9), p, round(ps, 9), pc, n)
        for device, hour, e, p, ps, pc, n in rows
    }


async def test_hourly_totals_count_inserted_readings_only(database: Database) -> None:
    """Duplicates within a batch, across batches and across a restart change nothing."""
    first = [
        reading("m-1", 10, 0.25, 2.0),
        reading("m-1", 10, 9.99, 99.0),  # same key again in the batch: the first one counts
        reading("m-1", 50, 0.5, 3.5),
        reading("m-1", 70, 0.125, 1.0),  # 00:10 on April 1st, another month's partition
        reading("m-2", 20, None, 4.0),  # power only
    ]
    again = [
        reading("m-1", 50, 0.5, 3.5),
        reading("m-1", 55, 0.25, None),
        reading("m-1", 55, 7.0, 70.0),  # a batch into existing months keeps the first too
    ]
    await write(database, first, again)
    await write(database, first)  # a restarted daemon, the broker redelivering
    assert hourly(database) == {
        ("m-1", H0): (1.0, 3.5, 5.5, 2, 3),
        ("m-1", H0 + timedelta(hours=1)): (0.125, 1.0, 1.0, 1, 1),
        ("m-2", H0): (0.0, 4.0, 4.0, 1, 1),
    }
    midnight = H0.replace(hour=0)
    assert hourly(database, "energy_daily", "day") == {
        ("m-1", midnight): (1.0, 3.5, 5.5, 2, 3),
        ("m-1", midnight + timedelta(days=1)): (0.125, 1.0, 1.0, 1, 1),
        ("m-2", midnight): (0.0, 4.0, 4.0, 1, 1),
    }
    march, april = H0.replace(day=1, hour=0), H0.replace(month=4, day=1, hour=0)
    assert hourly(database, "energy_monthly", "month") == {
        ("m-1", march): (1.0, 3.5, 5.5, 2, 3),
        ("m-1", april): (0.125, 1.0, 1.0, 1, 1),
        ("m-2", march): (0.0, 4.0, 4.0, 1, 1),
    }


async def test_upgrading_to_version_3_fills_the_rollup_from_stored_readings(
    database: Database,
) -> None:
    """A database from before the rollup gets energy_hourly computed from energy_data."""
    await write(database, [reading("m-1", 5, 0.5, 1.0), reading("m-1", 65, 0.75, 2.0)])
    expected, daily = hourly(database), hourly(database, "energy_daily", "day")
    database.execute("DROP VIEW user_energy_summary")
    database.execute("DROP TABLE energy_hourly")
    database.execute("DROP TABLE energy_daily")
    database.execute("DROP TABLE energy_monthly")
    database.execute("DELETE FROM meterflow_schema WHERE version >= 3")
    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (
        hourly(database)
        == expected
        == {
            ("m-1", H0): (0.5, 1.0, 1.0, 1, 1),
            ("m-1", H0 + timedelta(hours=1)): (0.75, 2.0, 2.0, 1, 1),
        }
    )
    assert hourly(database, "energy_daily", "day") == daily
