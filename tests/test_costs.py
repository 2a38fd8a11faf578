"""Cost and carbon: tariffs by local time and validity, the rates they make, and every
rollup priced at its owner's rate, on both backends; golden figures worked out by hand.

The month: March 2026 in Berlin, whose clocks go forward on Sunday the 29th (a 23-hour
day). Tariff "spring" holds from the 1st to the 15th: 0.40 per kWh 07:00-21:00 Monday to
Friday, 0.30 otherwise. Tariff "summer" from the 16th: 0.32, 0.20 at night (22:00-06:00).
Both credit 0.08 per kWh fed in. The grid emits 380 g CO2 per kWh.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from meterflow.cli import main
from meterflow.publisher import Publisher
from meterflow.settings import load_settings
from partitions import Month
from storage import BatchWriter, DeviceType, Reading, WriteBatch, open_engine
from storage.backend import backend_for
from storage.prices import Prices, recompute, record_rates
from storage.registry import Registration, register
from storage.rollups import ALL_TIME
from storage.tariffs import CarbonSettings, Tariff, TariffPeriod, check_tariffs, timeline
from storage.verify import rebuild_month
from tests.cli import meterflow
from tests.databases import Database
from tests.helpers import payload, recent, running_daemon, wait_until
from tests.mosquitto import Mosquitto

BERLIN = "Europe/Berlin"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
SPRING = Tariff(
    name="spring", time_zone=BERLIN, valid_from=date(2026, 3, 1), valid_to=date(2026, 3, 16),
    import_price=0.30, export_price=0.08,
    periods=[TariffPeriod(name="peak", days=WEEKDAYS, start="07:00", end="21:00",
                          import_price=0.40)],
)  # fmt: skip
SUMMER = Tariff(
    name="summer", time_zone=BERLIN, valid_from=date(2026, 3, 16), valid_to=date(2026, 4, 1),
    import_price=0.32, export_price=0.08,
    periods=[TariffPeriod(name="night", start="22:00", end="06:00", import_price=0.20)],
)  # fmt: skip
GRID = CarbonSettings(zone="DE", intensity_g_per_kwh={"DE": 380.0})
MARCH = (datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC))
QUARTER = timedelta(minutes=15)


def test_periods_follow_local_time_across_the_clock_change() -> None:
    """Summer's night ends at 06:00 Berlin time: 05:00 UTC before the 29th, 04:00 after."""
    rates = [r for r in timeline([SPRING, SUMMER], GRID, date(2026, 3, 1)) if r.tariff == "summer"]
    day_starts = [r.since for r in rates if r.period is None]
    assert datetime(2026, 3, 28, 5, tzinfo=UTC) in day_starts
    assert datetime(2026, 3, 29, 4, tzinfo=UTC) in day_starts
    assert rates[0].since == datetime(2026, 3, 15, 23, tzinfo=UTC)  # local midnight, +01:00
    assert (rates[0].period, rates[0].import_price) == ("night", 0.20)


def test_a_users_own_tariff_comes_before_everyones_and_gaps_have_no_price() -> None:
    """Where no tariff holds, no price (and no cost), not the last one's."""
    own = Tariff(name="own", valid_from=date(2026, 3, 10), valid_to=date(2026, 3, 12),
                 users=["u-1"], import_price=0.25)  # fmt: skip
    rates = timeline([SPRING, own], GRID, date(2026, 3, 1))
    mine = [(r.since, r.tariff) for r in rates if r.subject == "user:u-1"]
    assert (datetime(2026, 3, 10, tzinfo=UTC), "own") in mine
    assert (datetime(2026, 3, 12, tzinfo=UTC), "spring") in mine
    assert rates[-1].tariff is None  # after spring ends
    assert rates[-1].carbon_g_per_kwh == 380.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TariffPeriod(name="p", start="07:10", end="09:00"), "not on a quarter hour"),
        (lambda: Tariff(name="t", valid_from=date(2026, 3, 1), import_price=0.3, periods=[
            TariffPeriod(name="a", start="07:00", end="12:00"),
            TariffPeriod(name="b", days=["mon"], start="11:00", end="13:00")]),
         "periods 'a' and 'b' overlap on mon at 11:00"),
        (lambda: check_tariffs([SPRING, SPRING.model_copy(update={"name": "x"})]),
         "tariffs 'spring' and 'x' are both valid for everyone at once"),
        (lambda: CarbonSettings(zone="FR"), "carbon zone 'FR' has no intensity_g_per_kwh"),
    ],
)  # fmt: skip
def test_a_tariff_that_cannot_be_right_is_refused_with_the_reason(make: Any, message: str) -> None:
    with pytest.raises((ValidationError, ValueError), match=message):
        make()


def march(
    device: str, kind: DeviceType, energy: float, hours: tuple[int, int] = (0, 24)
) -> list[Reading]:
    """A reading in the middle of each quarter hour of March (Berlin time) whose local hour
    lies in `hours`, each with `energy` kWh."""
    start, end = MARCH
    zone = ZoneInfo(BERLIN)
    readings = []
    at = start
    while at < end:
        local = at.astimezone(zone)
        if hours[0] <= local.hour < hours[1]:
            middle = at + timedelta(minutes=7, seconds=30)
            readings.append(Reading("t", device, kind, middle, energy, energy * 4))
        at += QUARTER
    return readings


def store(database: Database, prices: Prices, readings: list[Reading]) -> None:
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url, priced=prices.configured) as writer:
            async with engine.connect() as conn:
                await record_rates(conn, prices, date(2026, 3, 1))
                async with conn.begin():
                    await register(conn, [Registration("pv-1", "solar_panel", user_id="u-1")],
                                   MARCH[0])  # fmt: skip
            for first in range(0, len(readings), 500):
                await writer.write(WriteBatch(readings[first : first + 500]))
        await engine.dispose()

    asyncio.run(go())


def totals(database: Database, table: str, device: str) -> tuple[float, float | None]:
    [(cost, carbon)] = database.query(
        f"SELECT sum(cost), sum(carbon) FROM {table} WHERE device_id = '{device}'"
    )
    return cost, carbon


SPRING_COST = 0.1 * (140 * 4 * 0.40 + 220 * 4 * 0.30)  # 10 weekdays of 14 peak hours
# 16 days less the hour skipped on the 29th; nights: 16 mornings of 6 hours (one of 5),
# 16 evenings of 2.
SUMMER_HOURS, SUMMER_NIGHT = 16 * 24 - 1, 16 * 6 - 1 + 16 * 2
SUMMER_COST = 0.1 * 4 * (SUMMER_NIGHT * 0.20 + (SUMMER_HOURS - SUMMER_NIGHT) * 0.32)
MARCH_KWH = 0.1 * 4 * (15 * 24 + SUMMER_HOURS)
# The panel feeds in 0.05 kWh a quarter hour from 10:00 to 14:00, every day.
PANEL_CREDIT = -31 * 4 * 4 * 0.05 * 0.08


def test_a_time_of_use_month_across_the_clock_change_costs_what_hand_counting_says(
    database: Database,
) -> None:
    """Each rollup holds the month's cost at the prices then and its carbon, the panel's
    feed-in as a credit without carbon; hours, days and months equal the quarter hours."""
    prices = Prices([SPRING, SUMMER], GRID)
    panel = march("pv-1", "solar_panel", 0.05, (10, 14))
    store(database, prices, march("m-1", "smart_meter", 0.1) + panel)
    for table in ("energy_15min", "energy_hourly", "energy_daily", "energy_monthly"):
        cost, carbon = totals(database, table, "m-1")
        assert cost == pytest.approx(SPRING_COST + SUMMER_COST), table
        assert carbon == pytest.approx(MARCH_KWH * 0.380), table
        panel_cost, panel_carbon = totals(database, table, "pv-1")
        assert panel_cost == pytest.approx(PANEL_CREDIT), table
        assert panel_carbon is None


def test_a_price_change_dated_in_the_past_applies_from_its_date_once_recomputed(
    database: Database,
) -> None:
    """Summer's day price raised to 0.35: the rates change from its first day hour on, the
    stored costs only when `recompute` runs, and then only from there."""
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1))
    dearer = SUMMER.model_copy(update={"import_price": 0.35})

    async def change() -> tuple[datetime | None, int]:
        engine = open_engine(database.url)
        async with engine.connect() as conn:
            changed = await record_rates(conn, Prices([SPRING, dearer], GRID), date(2026, 3, 1))
            assert changed is not None
            assert totals(database, "energy_monthly", "m-1")[0] == pytest.approx(
                SPRING_COST + SUMMER_COST
            )
            repriced = await recompute(conn, backend_for(conn.dialect.name), changed, MARCH[1])
        await engine.dispose()
        return changed, repriced.quarter_hours

    changed, quarter_hours = asyncio.run(change())
    assert changed == datetime(2026, 3, 16, 5, tzinfo=UTC)  # the night rate is unchanged
    assert quarter_hours == (15 * 24 + 17) * 4  # 16 March 05:00 to 31 March 22:00, UTC
    dearer_cost = 0.1 * 4 * (SUMMER_NIGHT * 0.20 + (SUMMER_HOURS - SUMMER_NIGHT) * 0.35)
    for table in ("energy_15min", "energy_hourly", "energy_daily", "energy_monthly"):
        assert totals(database, table, "m-1")[0] == pytest.approx(SPRING_COST + dearer_cost)


def test_each_quarter_hour_is_priced_at_its_owners_tariff_then(database: Database) -> None:
    """u-1 has a flat tariff of their own; the meter is theirs, so its energy costs 0.25
    throughout, while a device of nobody's pays everyone's."""
    own = Tariff(name="own", time_zone=BERLIN, valid_from=date(2026, 3, 1),
                 valid_to=date(2026, 4, 1), users=["u-1"], import_price=0.25)  # fmt: skip
    panel = march("pv-1", "solar_panel", 0.05, (10, 14))
    store(database, Prices([SPRING, SUMMER, own], GRID), panel + march("m-2", "smart_meter", 0.1))
    # pv-1 is u-1's: its feed-in is credited at own's export price, 0.
    assert totals(database, "energy_monthly", "pv-1")[0] == pytest.approx(0.0)
    assert totals(database, "energy_monthly", "m-2")[0] == pytest.approx(SPRING_COST + SUMMER_COST)


CONFIG = """
[storage]
url = "sqlite:///{db}"

[[tariffs]]
name = "flat"
valid_from = 2026-01-01
import_price = {price}
export_price = 0.10

[carbon]
zone = "DE"
intensity_g_per_kwh = {{ DE = 400.0 }}
"""


@pytest.mark.mqtt
async def test_the_daemon_prices_what_it_stores_and_recompute_follows_a_tariff_change(
    broker: Mosquitto, publisher: Publisher, tmp_path: Path, prefix: str
) -> None:
    """Tariffs and carbon from the config file: the daemon's rollups carry the cost and
    carbon `query energy` shows; a changed price reaches them through `costs recompute`."""
    db = tmp_path / "data" / "meterflow.db"
    config = tmp_path / "meterflow.toml"
    config.write_text(CONFIG.format(db=db, price=0.30))
    settings = load_settings(config, **{"mqtt.url": broker.url, "mqtt.topic_prefix": prefix,
                                        "mqtt.client_id": f"meterflow-{prefix}",
                                        "batch.max_delay_ms": 50})  # fmt: skip
    day = recent(2 * 86400).date()
    noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    async with running_daemon(settings) as daemon:
        for minute in range(0, 60, 5):
            at = noon + timedelta(minutes=minute)
            publisher.publish(f"{prefix}/smart_meter/m-1/telemetry", payload("m-1", at, energy=0.5))
            publisher.publish(f"{prefix}/solar_panel/pv-1/telemetry",
                              payload("pv-1", at, energy=0.25))  # fmt: skip
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.stored == 24, what="24 readings")

    async def energy(device: str) -> dict[str, Any]:
        arguments = ["query", "energy", "--config", str(config), "--device", device,
                     "--from", day.isoformat(), "--to", day.isoformat(), "--tz", "UTC",
                     "--format", "json"]  # fmt: skip
        shown = await asyncio.to_thread(meterflow, *arguments)
        [row] = json.loads(shown.output)
        return row  # type: ignore[no-any-return]

    meter, panel = await energy("m-1"), await energy("pv-1")
    assert meter["cost"] == pytest.approx(12 * 0.5 * 0.30)
    assert meter["carbon_kg"] == pytest.approx(12 * 0.5 * 0.400)
    assert (panel["cost"], panel["carbon_kg"]) == (pytest.approx(-12 * 0.25 * 0.10), None)

    config.write_text(CONFIG.format(db=db, price=0.50))
    repriced = await asyncio.to_thread(meterflow, "costs", "recompute", "--config", str(config))
    # 12:00-13:00: two devices' quarter hours, and their readings.
    assert repriced.output.strip() == "priced 8 quarter hours and 24 readings"
    assert (await energy("m-1"))["cost"] == pytest.approx(12 * 0.5 * 0.50)


def test_rebuilt_rollups_are_priced_again(database: Database) -> None:
    """`db rebuild-rollups` replaces a month's rows by its readings' totals: their cost and
    carbon come back with them."""
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1))
    before = {t: totals(database, t, "m-1") for t in ("energy_15min", "energy_monthly")}

    async def rebuild() -> None:
        engine = open_engine(database.url)
        async with engine.connect() as conn, conn.begin():
            await rebuild_month(conn, backend_for(conn.dialect.name), Month(2026, 3))
        await engine.dispose()

    asyncio.run(rebuild())
    for table, (cost, carbon) in before.items():
        assert totals(database, table, "m-1") == pytest.approx((cost, carbon))


SPOT = """
[storage]
url = "{url}"

[[tariffs]]
name = "spot"
dynamic = true
valid_from = 2026-03-01
export_price = 0.05
"""


def test_a_dynamic_price_day_at_15_minute_resolution_costs_each_quarter_at_its_price(
    database: Database, tmp_path: Path
) -> None:
    """Day-ahead prices imported for 10 March: each quarter hour costs its own price; the
    11th, without prices, has no cost; an hourly file later replaces the day's prices."""
    config = tmp_path / "meterflow.toml"
    config.write_text(SPOT.format(url=database.url))
    day = datetime(2026, 3, 10, tzinfo=UTC)
    spot = Tariff(name="spot", dynamic=True, valid_from=date(2026, 3, 1), export_price=0.05)
    readings = [
        Reading("t", "m-1", "smart_meter", day + i * QUARTER + timedelta(minutes=7), 0.1, 0.4)
        for i in range(96 + 4)
    ]
    store(database, Prices([spot]), readings)
    quarters = tmp_path / "quarters.csv"
    quarters.write_text("start,end,price\n" + "".join(
        f"{(day + i * QUARTER).isoformat()},{(day + (i + 1) * QUARTER).isoformat()},"
        f"{0.10 + i * 0.001:.3f}\n" for i in range(96)
    ))  # fmt: skip
    imported = meterflow("prices", "import", str(quarters), "--tariff", "spot",
                         "--config", str(config))  # fmt: skip
    assert imported.output.strip() == (
        "imported 96 prices of spot from 2026-03-10T00:00:00+00:00 to "
        "2026-03-11T00:00:00+00:00; priced 96 quarter hours and 96 readings"
    )

    def daily() -> list[tuple[Any, ...]]:
        return database.query("SELECT cost FROM energy_daily WHERE device_id = 'm-1' ORDER BY day")

    assert daily() == [(pytest.approx(0.1 * (96 * 0.10 + 0.001 * sum(range(96)))),), (None,)]
    hours = tmp_path / "hours.csv"
    hours.write_text("start,price\n" + "".join(
        f"{(day + timedelta(hours=h)).isoformat()},0.2\n" for h in range(24)
    ))  # fmt: skip
    meterflow("prices", "import", str(hours), "--tariff", "spot", "--resolution", "60",
              "--config", str(config))  # fmt: skip
    assert daily() == [(pytest.approx(96 * 0.1 * 0.2),), (None,)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("start,end,price\n2026-03-10T00:10:00Z,2026-03-10T00:25:00Z,0.1\n",
         "line 2: start '2026-03-10T00:10:00Z' is not on a quarter hour"),
        ("start,end,price\n2026-03-10T00:00:00,2026-03-10T00:15:00Z,0.1\n",
         "line 2: start '2026-03-10T00:00:00' needs a UTC offset"),
        ("start,end,price\n2026-03-10T00:00:00Z,2026-03-10T00:15:00Z,cheap\n",
         "line 2: price 'cheap' is not a number"),
        ("start,price\n2026-03-10T00:00:00Z,0.1\n", "no end column: give --resolution"),
        ("when,price\n", "line 1: expected the header start,end,price or start,price"),
    ],
)  # fmt: skip
def test_a_price_file_that_cannot_be_read_is_refused_naming_the_line(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "meterflow.toml"
    config.write_text(SPOT.format(url=f"sqlite:///{tmp_path / 'm.db'}"))
    prices = tmp_path / "prices.csv"
    prices.write_text(content)
    refused = CliRunner().invoke(
        main, ["prices", "import", str(prices), "--tariff", "spot", "--config", str(config)]
    )
    assert refused.exit_code == 1
    assert message in refused.output
    assert "Traceback" not in refused.output


async def reprice(database: Database) -> None:
    """`costs recompute` over the whole database, at the rates it holds."""
    engine = open_engine(database.url)
    async with engine.connect() as conn:
        await recompute(conn, backend_for(conn.dialect.name), *ALL_TIME)
    await engine.dispose()


def test_db_verify_checks_cost_and_carbon_against_the_rates(database: Database) -> None:
    """A tariff changed without `costs recompute`, or a cost edited by hand, is found by
    `db verify` with the fix; once repriced, verify passes."""
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1))
    verified = meterflow("db", "verify", "--db", database.url)
    assert "cost and carbon match the rates" in verified.output, verified.output

    async def change() -> None:
        engine = open_engine(database.url)
        async with engine.connect() as conn:
            dearer = SUMMER.model_copy(update={"import_price": 0.35})
            await record_rates(conn, Prices([SPRING, dearer], GRID), date(2026, 3, 1))
        await engine.dispose()

    asyncio.run(change())
    refused = CliRunner().invoke(main, ["db", "verify", "--db", database.url])
    assert refused.exit_code == 1
    assert "2026-03: " in refused.output
    assert "rows' cost or carbon differ from the rates" in refused.output
    assert "`meterflow costs recompute` prices them again" in refused.output
    asyncio.run(reprice(database))
    assert "cost and carbon match the rates" in meterflow("db", "verify", "--db",
                                                          database.url).output  # fmt: skip
    database.execute(
        "UPDATE energy_daily SET cost = cost + 1 WHERE day = (SELECT min(day) FROM energy_daily)"
    )
    edited = CliRunner().invoke(main, ["db", "verify", "--db", database.url])
    assert "2026-02: 1 rows' cost or carbon differ from the rates" in edited.output
    assert "energy_daily m-1 consumption" in edited.output


CARBON = """
[storage]
url = "{url}"

[carbon]
zone = "DK1"
dynamic_zones = ["DK1"]
"""


def test_an_imported_carbon_series_gives_each_quarter_hour_its_intensity(
    database: Database, tmp_path: Path
) -> None:
    """A zone whose intensity is imported by the hour: each quarter hour's carbon is its
    energy at that hour's intensity; a day without an import has none."""
    config = tmp_path / "meterflow.toml"
    config.write_text(CARBON.format(url=database.url))
    day = datetime(2026, 3, 10, tzinfo=UTC)
    readings = [
        Reading("t", "m-1", "smart_meter", day + i * QUARTER + timedelta(minutes=7), 0.1, 0.4)
        for i in range(96 + 4)
    ]
    settings = load_settings(config)
    store(database, settings.prices, readings)
    hours = tmp_path / "carbon.csv"
    hours.write_text("start,g_per_kwh\n" + "".join(
        f"{(day + timedelta(hours=h)).isoformat()},{100 + 10 * h}\n" for h in range(24)
    ))  # fmt: skip
    imported = meterflow("carbon", "import", str(hours), "--zone", "DK1", "--resolution", "60",
                         "--config", str(config))  # fmt: skip
    assert imported.output.strip().endswith("; priced 96 quarter hours and 96 readings")
    daily = database.query("SELECT carbon FROM energy_daily WHERE device_id = 'm-1' ORDER BY day")
    # 0.4 kWh an hour at 100 + 10 h g/kWh, in kg.
    assert daily == [(pytest.approx(sum(0.4 * (100 + 10 * h) / 1000 for h in range(24))),),
                     (None,)]  # fmt: skip
    refused = CliRunner().invoke(main, ["carbon", "import", str(hours), "--zone", "FR",
                                        "--config", str(config)])  # fmt: skip
    assert refused.exit_code == 2
    assert "zone 'FR' is not one of [carbon] dynamic_zones (those: DK1)" in refused.output
