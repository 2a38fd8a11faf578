"""Owners at the time: a reading belongs to whoever owned its device when it was recorded,
every per-user total follows that, and a change of owner never moves past energy."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage import BatchWriter, Reading, WriteBatch, open_engine, registry
from storage.owners import next_quarter_hour
from storage.registry import Registration
from tests.cli import meterflow
from tests.databases import Database, as_utc

T0 = datetime(2026, 5, 1, tzinfo=UTC)
CHANGED_AT = T0 + timedelta(days=1, minutes=3)  # takes effect at 00:15 on May 2nd


def quarter_hours(first: datetime, count: int) -> list[Reading]:
    return [
        Reading("t", "m-1", "smart_meter", first + timedelta(minutes=15 * n + 1), 0.25, 1.0)
        for n in range(count)
    ]


def run(database: Database) -> None:
    """u-1 registers m-1; a day of readings; u-2 takes it over; a day more, and a reading
    from the first day that arrives late."""

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await registry.register(
                    conn, [Registration("m-1", "smart_meter", "u-1")], T0 - timedelta(days=1)
                )
            await writer.write(WriteBatch(quarter_hours(T0, 96)))
            async with engine.begin() as conn:
                await registry.register(
                    conn, [Registration("m-1", "smart_meter", "u-2")], CHANGED_AT
                )
            await writer.write(WriteBatch(quarter_hours(T0 + timedelta(days=1), 96)))
            late = Reading("t", "m-1", "smart_meter", T0 + timedelta(hours=10, minutes=7), 0.5, 2.0)
            await writer.write(WriteBatch([late]))
        await engine.dispose()

    asyncio.run(go())


def test_a_change_of_owner_takes_effect_at_the_next_quarter_hour() -> None:
    """03 past becomes 15 past; a change made on a quarter hour is at once."""
    assert next_quarter_hour(CHANGED_AT) == T0 + timedelta(days=1, minutes=15)
    assert next_quarter_hour(T0) == T0


def test_each_reading_belongs_to_the_owner_when_it_was_recorded(database: Database) -> None:
    """Before 00:15 on May 2nd u-1's, the late reading from May 1st too; after it u-2's."""
    run(database)
    rows = database.query("SELECT recorded_at, user_id FROM energy_data")
    since = next_quarter_hour(CHANGED_AT)
    assert {(as_utc(at) >= since, user) for at, user in rows} == {(False, "u-1"), (True, "u-2")}
    [(late_owner,)] = database.query("SELECT user_id FROM energy_data WHERE energy_amount = 0.5")
    assert late_owner == "u-1"


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kolkata"])
def test_each_users_days_are_the_readings_they_owned(database: Database, zone: str) -> None:
    """query energy --user and balance give each user the energy of the readings that are
    theirs, summed by local day; the device's own days are unchanged."""
    run(database)
    by_user: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    for at, user, kwh in database.query(
        "SELECT recorded_at, user_id, energy_amount FROM energy_data"
    ):
        by_user[user][as_utc(at).astimezone(ZoneInfo(zone)).date().isoformat()] += kwh
    span = ("--every", "day", "--tz", zone, "--from", "2026-04-30", "--to", "2026-05-03")
    for user in ("u-1", "u-2"):
        done = meterflow("query", "energy", "--user", user, *span, "--format", "json",
                         "--db", database.url)  # fmt: skip
        assert done.exit_code == 0, done.output
        days = {row["start"][:10]: row["consumption_kwh"] for row in json.loads(done.output)}
        assert days == pytest.approx({day: by_user[user].get(day, 0.0) for day in days}), user
    device = meterflow("query", "energy", "--device", "m-1", *span, "--format", "json",
                       "--db", database.url)  # fmt: skip
    total = sum(row["consumption_kwh"] for row in json.loads(device.output))
    assert total == pytest.approx(2 * 96 * 0.25 + 0.5)


def test_the_summary_view_credits_each_user_with_what_they_owned(database: Database) -> None:
    """user_energy_summary: u-1 has May 1st whole and May 2nd's first quarter hour; u-2
    the rest of May 2nd."""
    run(database)
    rows = database.query(
        "SELECT user_id, CAST(day AS TEXT), consumption_kwh FROM user_energy_summary "
        "ORDER BY user_id, day"
    )
    assert rows == [
        ("u-1", "2026-05-01", 96 * 0.25 + 0.5),
        ("u-1", "2026-05-02", 0.25),
        ("u-2", "2026-05-02", 95 * 0.25),
    ]
