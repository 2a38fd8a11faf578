"""SQL's local days: the `[analytics]` zones written into the database, so that the
`user_energy_summary` view counts each user's own days as `query energy` does."""

from __future__ import annotations

import bisect
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage import Reading
from storage.owners import BEGINNING
from storage.zones import offsets
from tests.cli import meterflow
from tests.databases import Database
from tests.helpers import make_settings, running_daemon, store_batches
from tests.mosquitto import Mosquitto

KWH = 0.25


@pytest.mark.parametrize(
    "zone",
    ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
     "Africa/Monrovia", "UTC"],
)  # fmt: skip
def test_a_zones_offsets_are_the_ones_zoneinfo_gives_at_every_instant(zone: str) -> None:
    """Looked up as the view does (the latest change not after the instant), the table
    agrees with zoneinfo every 7 hours 13 minutes from 1970 to 2100: DST, half-hour DST
    (Lord Howe) and a zone whose offset had seconds (Monrovia, -0:44:30 until 1972)."""
    changes = offsets(zone)
    assert changes[0][0] == BEGINNING
    since = [change for change, _ in changes]
    at = datetime(1970, 1, 1, tzinfo=UTC)
    while at < datetime(2100, 1, 1, tzinfo=UTC):
        offset = changes[bisect.bisect_right(since, at) - 1][1]
        expected = at.astimezone(ZoneInfo(zone)).utcoffset()
        assert expected is not None
        assert offset == expected.total_seconds(), at
        at += timedelta(hours=7, minutes=13)


def test_berlins_clock_changes_of_2026_are_found_to_the_second() -> None:
    changes = [(at, offset) for at, offset in offsets("Europe/Berlin") if at.year == 2026]
    assert changes == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), 7200),
        (datetime(2026, 10, 25, 1, tzinfo=UTC), 3600),
    ]


USERS = {"u-berlin": "Europe/Berlin", "u-kolkata": "Asia/Kolkata", "u-other": None}
DEFAULT = "America/New_York"
DAYS = ("2026-10-24", "2026-10-26")


def config(tmp_path: Path, timezone: str, user_timezones: dict[str, str]) -> str:
    path = tmp_path / "meterflow.toml"
    users = "\n".join(f'"{user}" = "{zone}"' for user, zone in user_timezones.items())
    path.write_text(f'[analytics]\ntimezone = "{timezone}"\n[analytics.user_timezones]\n{users}\n')
    return str(path)


def each_quarter_hour(device: str) -> list[Reading]:
    """KWH a minute into every UTC quarter hour from Oct 23rd 12:00 to Oct 27th 12:00,
    around Berlin's 25-hour day (Oct 25th)."""
    first = datetime(2026, 10, 23, 12, 1, tzinfo=UTC)
    return [
        Reading("t", device, "smart_meter", first + timedelta(minutes=15 * n), KWH, 1.0)
        for n in range(4 * 96)
    ]


def summary(database: Database) -> dict[str, dict[str, float]]:
    rows = database.query(
        "SELECT user_id, CAST(day AS TEXT), consumption_kwh FROM user_energy_summary"
    )
    days: dict[str, dict[str, float]] = {}
    for user, day, kwh in rows:
        days.setdefault(user, {})[day] = kwh
    return days


def days_of(database: Database, user: str, config_file: str) -> dict[str, float]:
    done = meterflow("query", "energy", "--user", user, "--every", "day", "--from", DAYS[0],
                     "--to", DAYS[1], "--format", "json", "--config", config_file,
                     "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    return {str(row["start"])[:10]: row["consumption_kwh"] for row in json.loads(done.output)}


def test_the_summary_view_counts_each_users_own_local_days(
    database: Database, tmp_path: Path
) -> None:
    """Each user's days in the summary are the days `query energy --user` gives in their
    zone, Berlin's 25-hour day included; a user without a zone of their own gets the
    default; and once the settings change, the next command makes the view follow."""
    for n, user in enumerate(USERS):
        registered = meterflow("devices", "register", f"m-{n}", "--type", "smart_meter",
                               "--user", user, "--db", database.url)  # fmt: skip
        assert registered.exit_code == 0, registered.output
    store_batches(database.url, [each_quarter_hour(f"m-{n}") for n in range(len(USERS))])
    zones = {user: zone for user, zone in USERS.items() if zone is not None}
    local = config(tmp_path, DEFAULT, zones)

    expected = {user: days_of(database, user, local) for user in USERS}
    view = summary(database)
    for user in USERS:
        assert {day: view[user][day] for day in expected[user]} == expected[user], user
    assert view["u-berlin"]["2026-10-25"] == 25 * 4 * KWH
    assert set(view["u-kolkata"]) == {"2026-10-23", "2026-10-24", "2026-10-25",
                                      "2026-10-26", "2026-10-27"}  # fmt: skip
    assert sum(view["u-other"].values()) == 4 * 96 * KWH
    assert view["u-other"]["2026-10-23"] == 16 * 4 * KWH  # from 12:00 UTC, 08:00 EDT

    utc = config(tmp_path, "UTC", {})
    assert meterflow("devices", "list", "--config", utc, "--db", database.url).exit_code == 0
    for user, days in summary(database).items():
        assert days == {"2026-10-23": 48 * KWH, "2026-10-24": 96 * KWH,
                        "2026-10-25": 96 * KWH, "2026-10-26": 96 * KWH,
                        "2026-10-27": 48 * KWH}, user  # fmt: skip


@pytest.mark.mqtt
async def test_the_daemon_records_its_zones_when_it_starts(
    broker: Mosquitto, database: Database, prefix: str
) -> None:
    settings = make_settings(
        broker.url, database.url, prefix, **{"analytics.timezone": "Asia/Kolkata"}
    )
    async with running_daemon(settings):
        pass
    assert database.query("SELECT user_id, zone FROM user_zones") == [("", "Asia/Kolkata")]
    assert database.query("SELECT zone, offset_s FROM zone_offsets") == [("Asia/Kolkata", 19800)]
