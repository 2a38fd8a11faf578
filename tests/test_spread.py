"""Energy where it happened: a reading's energy is spread over the interval it covers, in
proportion to time, in every rollup, also back across a month's end."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from storage import Reading
from storage.rollups import PIECE_COLUMNS, sqlite_pieces
from tests.databases import Database, as_utc
from tests.helpers import store_batches
from tests.test_migrations import meterflow

T0 = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)


def counter(at: datetime, kwh: float, device: str = "meter-1") -> Reading:
    return Reading(
        "t", device, "smart_meter", at, None, 1.0, counter="import", counter_kwh=kwh
    )  # fmt: skip


def write(database: Database, *batches: list[Reading]) -> None:
    store_batches(database.url, batches)


def rollup(database: Database, table: str, bucket: str) -> dict[datetime, tuple[float, int]]:
    """(energy, readings) per bucket of one device's rollup."""
    rows = database.query(f"SELECT {bucket}, energy_kwh, readings FROM {table}")
    return {as_utc(at): (round(energy, 9), readings) for at, energy, readings in rows}


def test_a_meter_back_after_three_days_offline_spreads_its_energy_over_them(
    database: Database,
) -> None:
    """72 kWh over 72 hours: each day 24 kWh, each hour 1, each quarter hour 0.25; the
    reading itself counts where it was recorded."""
    back = T0 + timedelta(days=3)
    write(database, [counter(T0, 1000.0)], [counter(back, 1072.0)])
    days = rollup(database, "energy_daily", "day")
    assert days == {
        T0: (24.0, 1),  # the first value: no energy, one reading
        T0 + timedelta(days=1): (24.0, 0),
        T0 + timedelta(days=2): (24.0, 0),
        back: (0.0, 1),
    }
    hours = rollup(database, "energy_hourly", "hour")
    assert len(hours) == 73
    assert {energy for at, (energy, _) in hours.items() if at < back} == {1.0}
    quarters = rollup(database, "energy_15min", "quarter_hour")
    assert len(quarters) == 3 * 96 + 1
    assert {energy for at, (energy, _) in quarters.items() if at < back} == {0.25}
    months = rollup(database, "energy_monthly", "month")
    assert months == {T0.replace(day=1): (72.0, 1), back.replace(day=1): (0.0, 1)}


def test_an_interval_across_quarter_hours_is_shared_in_proportion_to_time(
    database: Database,
) -> None:
    """From 10:10 to 10:20, 0.2 kWh: 10:10 to 10:15 gets half, 10:15 to 10:20 the other."""
    start = T0.replace(hour=10, minute=10)
    write(database, [counter(start, 5.0), counter(start + timedelta(minutes=10), 5.2)])
    quarters = rollup(database, "energy_15min", "quarter_hour")
    assert quarters == {
        T0.replace(hour=10): (0.1, 1),
        T0.replace(hour=10, minute=15): (0.1, 1),
    }
    assert rollup(database, "energy_hourly", "hour") == {T0.replace(hour=10): (0.2, 2)}


def test_energy_reaching_back_into_the_previous_month_is_checked_and_rebuilt_there(
    database: Database,
) -> None:
    """22:00 on March 31st to 02:00 on April 1st: March and April get 2 kWh each; `db
    verify` finds them right, and `db rebuild-rollups` rebuilds them so."""
    start = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    write(database, [counter(start, 10.0)], [counter(start + timedelta(hours=4), 14.0)])
    march, april = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    expected = {march: (2.0, 1), april: (2.0, 1)}
    assert rollup(database, "energy_monthly", "month") == expected
    verified = meterflow("db", "verify", "--db", database.url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    database.execute("UPDATE energy_monthly SET energy_kwh = 0")
    database.execute("DELETE FROM energy_15min")
    assert meterflow("db", "verify", "--db", database.url).returncode == 1
    rebuilt = meterflow("db", "rebuild-rollups", "--db", database.url)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert rollup(database, "energy_monthly", "month") == expected
    assert len(rollup(database, "energy_15min", "quarter_hour")) == 16 + 1  # 02:00: the reading
    assert meterflow("db", "verify", "--db", database.url).returncode == 0


def test_energy_without_a_known_interval_stays_where_it_was_recorded(
    database: Database,
) -> None:
    """A reading that states its energy but not its interval: all of it in its bucket."""
    at = T0.replace(hour=10, minute=20)
    write(database, [Reading("t", "meter-1", "smart_meter", at, 0.3, 1.2)])
    assert rollup(database, "energy_15min", "quarter_hour") == {
        T0.replace(hour=10, minute=15): (0.3, 1)
    }


@pytest.mark.parametrize("gap_hours", [0.1, 5, 49])
def test_spread_energy_adds_up_to_the_readings_energy(database: Database, gap_hours: float) -> None:
    """Whatever the interval, every rollup's total is the readings' total."""
    start = T0 + timedelta(minutes=7, seconds=13, milliseconds=250)
    end = start + timedelta(hours=gap_hours)
    write(database, [counter(start, 3.0)], [counter(end, 3.0 + gap_hours * 0.9)])
    [(stored,)] = database.query("SELECT sum(energy_amount) FROM energy_data")
    for table in ("energy_15min", "energy_hourly", "energy_daily", "energy_monthly"):
        [(total,)] = database.query(f"SELECT sum(energy_kwh) FROM {table}")
        assert total == pytest.approx(stored, rel=1e-12), table


def test_a_stated_interval_spreads_the_energy_as_a_counters_does(database: Database) -> None:
    """A reading of 0.6 kWh over the 30 minutes before 10:20 (canonical `interval_s`):
    09:50 to 10:20 is 0.2, 0.3 and 0.1 kWh in its three quarter hours."""
    at = T0.replace(hour=10, minute=20)
    reading = Reading("t", "meter-1", "smart_meter", at, 0.6, 1.2,
                      interval_start=at - timedelta(minutes=30))  # fmt: skip
    write(database, [reading])
    assert rollup(database, "energy_15min", "quarter_hour") == {
        T0.replace(hour=9, minute=45): (0.2, 0),
        T0.replace(hour=10): (0.3, 0),
        T0.replace(hour=10, minute=15): (0.1, 1),
    }


def test_each_quarter_hour_gets_its_share_of_an_interval_to_the_microsecond() -> None:
    """SQLite's pieces (the SQL every rollup is built from) against shares worked out here
    with exact fractions: intervals across a year's end, with microseconds, starting and
    ending on quarter hours and off them, empty, or starting after their reading. Seconds
    since 1970 in a double are good to a quarter of a microsecond: so are the shares."""
    end = datetime(2026, 1, 1, 0, 5, 0, 250_001, tzinfo=UTC)
    intervals = {
        1: (end - timedelta(minutes=40, microseconds=7), 0.9),
        2: (end.replace(minute=0, microsecond=0) - timedelta(hours=2), 1.0),
        3: (end - timedelta(days=2, seconds=1), 4.0),
        4: (end, 0.5),
        5: (end + timedelta(seconds=1), 0.5),
        6: (end - timedelta(hours=1), 0.0),
        7: (None, 0.7),
    }
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE r ({PIECE_COLUMNS})")
    for number, (start, energy) in intervals.items():
        recorded = end + timedelta(minutes=15 * number)
        db.execute("INSERT INTO r VALUES (?, 'm-1', 'consumption', ?, ?, ?, 1.0)",
                   (number, _stored(recorded), start and _stored(start), energy))  # fmt: skip
    pieces = db.execute(f"{sqlite_pieces('r')} SELECT id, quarter_hour, energy FROM pieces")
    found = {(number, quarter): share for number, quarter, share in pieces}
    expected: dict[tuple[int, str], Fraction] = {}
    for number, (start, energy) in intervals.items():
        recorded = end + timedelta(minutes=15 * number)
        own = recorded.replace(minute=recorded.minute // 15 * 15, second=0, microsecond=0)
        shares = {own: Fraction(energy)}
        if start is not None and energy > 0 and start < own:
            whole = (recorded - start) // timedelta(microseconds=1)
            quarter = start.replace(minute=start.minute // 15 * 15, second=0, microsecond=0)
            while quarter <= own:
                part = min(quarter + timedelta(minutes=15), recorded) - max(quarter, start)
                shares[quarter] = Fraction(energy) * (part // timedelta(microseconds=1)) / whole
                quarter += timedelta(minutes=15)
        expected |= {(number, _stored(quarter)): share for quarter, share in shares.items()}
    assert found.keys() == expected.keys()
    for key, share in expected.items():
        assert found[key] == pytest.approx(float(share), rel=1e-9, abs=1e-15), key


def _stored(moment: datetime) -> str:
    """A time as the readings' tables hold it."""
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
