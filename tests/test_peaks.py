"""Peak demand: each local month's highest 15-minute average power and the mean of twelve,
for a device and for a user whose devices draw together; golden figures by hand.

Twelve months from December 2025 in Brussels (capacity tariffs there bill on this):
meter m-1 draws 1 + 0.25 i kWh in the quarter hour from 18:00 on the 15th of month i, so
its peaks are 4 + i kW and their mean 9.5 kW. Meter m-2, u-1's until June 2026 and u-2's
after, draws 0.5 kWh in m-1's peak quarter of December and 3 kWh on 15 June at 18:00.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage import BatchWriter, Reading, WriteBatch, open_engine
from storage.analytics import owned
from storage.energy import first_instant
from storage.owners import whole
from storage.peaks import MonthlyPeak, mean_peak, monthly_peaks
from storage.registry import Registration, register
from tests.cli import meterflow
from tests.databases import Database
from tests.helpers import recent

BRUSSELS = ZoneInfo("Europe/Brussels")
MONTHS = [date(2025 + (11 + i) // 12, (11 + i) % 12 + 1, 1) for i in range(12)]
SPAN = (first_instant(MONTHS[0], BRUSSELS), first_instant(date(2026, 12, 1), BRUSSELS))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BRUSSELS).astimezone(UTC)


def quarter(device: str, start: datetime, kwh: float) -> Reading:
    """`kwh` drawn within the quarter hour from `start`."""
    return Reading("t", device, "smart_meter", start + timedelta(minutes=7), kwh, kwh * 4)


def store(database: Database) -> None:
    readings = [quarter("m-1", at(m.replace(day=15), 18), 1 + 0.25 * i) for i, m in
                enumerate(MONTHS)]  # fmt: skip
    readings += [quarter("m-1", at(m.replace(day=10), 9), 0.1) for m in MONTHS]
    readings += [quarter("m-2", at(MONTHS[0].replace(day=15), 18), 0.5)]
    june = MONTHS[6]
    readings += [quarter("m-2", at(june.replace(day=15), 18), 3.0)]

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.connect() as conn, conn.begin():
                owners = [Registration(d, "smart_meter", user_id="u-1") for d in ("m-1", "m-2")]
                await register(conn, owners, SPAN[0])
            await writer.write(WriteBatch(readings))
        async with engine.connect() as conn, conn.begin():
            sold = Registration("m-2", "smart_meter", user_id="u-2")
            await register(conn, [sold], first_instant(june, BRUSSELS))
        await engine.dispose()

    asyncio.run(go())


def peaks(database: Database, *, device: str | None = None, user: str | None = None
          ) -> list[MonthlyPeak]:  # fmt: skip
    async def ask() -> list[MonthlyPeak]:
        engine = open_engine(database.url)
        async with engine.connect() as conn, conn.begin():
            spans = whole([device], *SPAN) if device else await owned(conn, str(user), *SPAN)
            found = await monthly_peaks(conn, owned=spans, zone=BRUSSELS, start=SPAN[0],
                                        end=SPAN[1], home=user is not None)  # fmt: skip
        await engine.dispose()
        return found

    return asyncio.run(ask())


def test_a_devices_monthly_peaks_and_their_mean(database: Database) -> None:
    """Each month's peak is its highest quarter hour's average power, when it began."""
    store(database)
    found = peaks(database, device="m-1")
    assert [p.month for p in found] == MONTHS
    assert [p.peak_kw for p in found] == pytest.approx([4 + i for i in range(12)])
    assert [p.at for p in found] == [at(m.replace(day=15), 18) for m in MONTHS]
    assert mean_peak(found) == pytest.approx(9.5)


def test_a_users_peak_adds_their_devices_while_they_owned_them(database: Database) -> None:
    """December: both meters in one quarter hour, 6 kW. June: m-2's 12 kW is u-2's."""
    store(database)
    mine = {p.month: p.peak_kw for p in peaks(database, user="u-1")}
    assert mine[MONTHS[0]] == pytest.approx(4 * (1.0 + 0.5))
    assert mine[MONTHS[6]] == pytest.approx(4 + 6)
    [theirs] = peaks(database, user="u-2")
    assert (theirs.month, theirs.peak_kw) == (MONTHS[6], 12.0)


def test_a_submeters_draw_is_not_added_to_the_grid_meter_it_is_behind(
    database: Database,
) -> None:
    """A heat pump drawing 2 kWh behind u-3's grid meter, which measured 2.5 kWh: the
    home's peak is 10 kW, what the grid supplied, not 18 kW."""
    moment = at(MONTHS[3], 7)

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.connect() as conn, conn.begin():
                await register(conn, [Registration("g-3", "smart_meter", user_id="u-3"),
                                      Registration("hp-3", "heat_pump", user_id="u-3")],
                               SPAN[0])  # fmt: skip
            await writer.write(WriteBatch([quarter("g-3", moment, 2.5), Reading(
                "t", "hp-3", "heat_pump", moment + timedelta(minutes=7), 2.0, 8.0)]))  # fmt: skip
        await engine.dispose()

    asyncio.run(go())
    [peak] = peaks(database, user="u-3")
    assert (peak.month, peak.peak_kw, peak.at) == (MONTHS[3], 10.0, moment)


def test_query_peaks_lists_the_months_and_their_mean(database: Database) -> None:
    """`meterflow query peaks` over the last months, in the zone asked for."""
    moment = recent(3600).replace(minute=0, second=0, microsecond=0)

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            await writer.write(WriteBatch([quarter("m-9", moment, 0.75)]))
        await engine.dispose()

    asyncio.run(go())
    shown = meterflow("query", "peaks", "--db", database.url, "--device", "m-9",
                      "--months", "2", "--tz", "UTC", "--format", "json")  # fmt: skip
    *months, mean = json.loads(shown.output)
    assert months == [{"month": moment.strftime("%Y-%m"), "peak_kw": 3.0, "at": moment.isoformat()}]
    assert mean == {"month": "mean of 1", "peak_kw": 3.0, "at": None}
