"""Local days, hours and months: `meterflow query energy` in the reader's time zone, exact
on DST days and in half- and quarter-hour zones, and equal to the raw readings' sums."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage import Reading
from tests.cli import meterflow
from tests.databases import Database
from tests.helpers import store_batches

KWH = 0.25  # every reading, one per quarter hour: a local day of n hours holds n kWh


def every_quarter_hour(around: date, zone: ZoneInfo) -> list[Reading]:
    """A reading a minute into each UTC quarter hour from the day before `around` (local) to
    the day after, each with KWH and a power that names its UTC hour."""
    start = datetime.combine(around - timedelta(days=1), datetime.min.time(), zone)
    first = start.astimezone(UTC).replace(minute=0)
    return [
        Reading("t", "meter-1", "smart_meter", at, KWH, float(at.hour))
        for n in range(3 * 96 + 8)
        for at in [first + timedelta(minutes=15 * n + 1)]
    ]


def write(database: Database, readings: list[Reading]) -> None:
    store_batches(database.url, [readings])


def energy(database: Database, *args: str) -> list[dict[str, object]]:
    done = meterflow("query", "energy", "--device", "meter-1", *args, "--format", "json",
                     "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    rows: list[dict[str, object]] = json.loads(done.output)
    return rows


# (zone, a day, its length in hours, the first instant as printed)
DAYS = [
    ("Europe/Berlin", date(2026, 3, 29), 23, "2026-03-29T00:00:00+01:00"),
    ("Europe/Berlin", date(2026, 10, 25), 25, "2026-10-25T00:00:00+02:00"),
    ("Europe/Berlin", date(2026, 6, 15), 24, "2026-06-15T00:00:00+02:00"),
    ("America/New_York", date(2026, 3, 8), 23, "2026-03-08T00:00:00-05:00"),
    ("America/New_York", date(2026, 11, 1), 25, "2026-11-01T00:00:00-04:00"),
    ("Asia/Kolkata", date(2026, 6, 15), 24, "2026-06-15T00:00:00+05:30"),
    ("Asia/Kathmandu", date(2026, 6, 15), 24, "2026-06-15T00:00:00+05:45"),
    ("UTC", date(2026, 6, 15), 24, "2026-06-15T00:00:00+00:00"),
]


@pytest.mark.parametrize(("zone", "day", "hours", "first"), DAYS)
def test_a_local_day_holds_exactly_its_own_hours(
    database: Database, zone: str, day: date, hours: int, first: str
) -> None:
    """The day's energy is its hours' worth, its start the local midnight with its offset,
    and --every hour gives one row per hour the day has."""
    write(database, every_quarter_hour(day, ZoneInfo(zone)))
    span = ("--tz", zone, "--from", day.isoformat(), "--to", day.isoformat())
    [whole] = energy(database, "--every", "day", *span)
    assert whole == {
        "start": first,
        "consumption_kwh": hours * 4 * KWH,
        "production_kwh": 0.0,
        "peak_power_kw": whole["peak_power_kw"],
        "readings": hours * 4,
        "cost": None,  # no tariff configured
        "carbon_kg": None,
    }
    by_hour = energy(database, "--every", "hour", *span)
    assert [row["consumption_kwh"] for row in by_hour] == [4 * KWH] * hours
    starts = [datetime.fromisoformat(str(row["start"])) for row in by_hour]
    assert {b - a for a, b in itertools.pairwise(starts)} == {timedelta(hours=1)}
    quarters = energy(database, "--every", "15min", *span)
    assert len(quarters) == hours * 4
    assert {row["consumption_kwh"] for row in quarters} == {KWH}


def test_the_hour_that_happens_twice_is_two_rows(database: Database) -> None:
    """Berlin, 2026-10-25: 02:00+02:00 and 02:00+01:00 are two hours, each its own peak."""
    zone = ZoneInfo("Europe/Berlin")
    day = date(2026, 10, 25)
    write(database, every_quarter_hour(day, zone))
    rows = energy(database, "--every", "hour", "--tz", "Europe/Berlin",
                  "--from", day.isoformat(), "--to", day.isoformat())  # fmt: skip
    twice = [row for row in rows if str(row["start"]).startswith("2026-10-25T02:00")]
    assert [(row["start"], row["peak_power_kw"]) for row in twice] == [
        ("2026-10-25T02:00:00+02:00", 0.0),  # 00:00 UTC
        ("2026-10-25T02:00:00+01:00", 1.0),  # 01:00 UTC
    ]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"])
def test_local_days_and_months_equal_the_raw_readings_summed_by_local_date(
    database: Database, zone: str
) -> None:
    """Readings at uneven times over two months' turn: each local day's and month's total
    is the sum of the readings recorded on that local date."""
    tz = ZoneInfo(zone)
    start = datetime(2026, 3, 27, 17, 3, tzinfo=UTC)
    readings = [
        Reading("t", "meter-1", "smart_meter", at, 0.01 * (n % 9), 1.0)
        for n in range(400)
        for at in [start + timedelta(minutes=37 * n)]
    ]
    write(database, readings)
    by_day: dict[str, float] = defaultdict(float)
    for reading in readings:
        by_day[reading.recorded_at.astimezone(tz).date().isoformat()] += reading.energy_kwh or 0
    rows = energy(database, "--every", "day", "--tz", zone, "--from", "2026-03-27",
                  "--to", "2026-04-08")  # fmt: skip
    got = {str(row["start"])[:10]: row["consumption_kwh"] for row in rows}
    assert got == pytest.approx({day: by_day.get(day, 0.0) for day in got})
    assert sum(by_day.values()) == pytest.approx(sum(float(str(v)) for v in got.values()))
    months = energy(database, "--every", "month", "--tz", zone, "--from", "2026-03-01",
                    "--to", "2026-04-30")  # fmt: skip
    assert [str(row["start"])[:7] for row in months] == ["2026-03", "2026-04"]
    assert sum(float(str(row["consumption_kwh"])) for row in months) == pytest.approx(
        sum(r.energy_kwh or 0 for r in readings)
    )


def test_a_zone_that_does_not_exist_is_refused_by_name(database: Database) -> None:
    """--tz Europe/Berln: exit 2, naming the zone and what would do."""
    done = meterflow("query", "energy", "--device", "meter-1", "--tz", "Europe/Berln",
                     "--db", database.url)  # fmt: skip
    assert done.exit_code == 2
    assert "unknown time zone 'Europe/Berln'" in done.output
