"""`meterflow report`: a home's month on one page, rendered in a real headless Chromium and
its numbers read off the page, against figures recomputed from the raw readings and
against the database.

The home (user h-1, Berlin) in March 2026, whose clocks go forward on the 29th: a grid
meter drawing 0.1 kWh every quarter hour and 0.6 from 20:00 to 21:00 (an EV charger's 0.5
included, which its own submeter measures too), feeding in 0.02 a quarter hour from
11:00 to 13:00, and panels producing 0.05 a quarter hour from 10:00 to 14:00. The
tariffs are test_costs' "spring" (peak 0.40 07:00-21:00 Monday to Friday, else 0.30,
until the 15th) and "summer" (0.32, night 0.20 22:00-06:00); 0.08 for feed-in, 380 g CO2
per kWh.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage import BatchWriter, DataType, DeviceType, Reading, WriteBatch, open_engine
from storage.prices import Prices, record_rates
from storage.registry import Registration, register
from tests.browser import Page, needs_chromium, number, rendered, screenshot
from tests.cli import meterflow
from tests.databases import Database
from tests.test_costs import GRID, MARCH, QUARTER, SPRING, SUMMER

BERLIN = ZoneInfo("Europe/Berlin")
CONFIG = """
[analytics]
timezone = "Europe/Berlin"

[[tariffs]]
name = "spring"
currency = "EUR"
time_zone = "Europe/Berlin"
valid_from = 2026-03-01
valid_to = 2026-03-16
import_price = 0.30
export_price = 0.08
[[tariffs.periods]]
name = "peak"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "07:00"
end = "21:00"
import_price = 0.40

[[tariffs]]
name = "summer"
currency = "EUR"
time_zone = "Europe/Berlin"
valid_from = 2026-03-16
valid_to = 2026-04-01
import_price = 0.32
export_price = 0.08
[[tariffs.periods]]
name = "night"
start = "22:00"
end = "06:00"
import_price = 0.20

[carbon]
zone = "DE"
intensity_g_per_kwh = { DE = 380.0 }
"""


def the_month() -> list[Reading]:
    """Every device's readings, one in the middle of each quarter hour."""
    readings = []
    at = MARCH[0]
    while at < MARCH[1]:
        hour = at.astimezone(BERLIN).hour
        middle = at + timedelta(minutes=7, seconds=30)

        def reading(device: str, kind: DeviceType, kwh: float, data_type: DataType) -> Reading:
            return Reading("t", device, kind, middle, kwh, kwh * 4, kind=data_type)  # noqa: B023

        readings.append(reading("g-1", "smart_meter", 0.6 if hour == 20 else 0.1, "consumption"))
        if hour == 20:
            readings.append(reading("ev-1", "ev_charger", 0.5, "consumption"))
        if 11 <= hour < 13:
            readings.append(reading("g-1", "smart_meter", 0.02, "production"))
        if 10 <= hour < 14:
            readings.append(reading("pv-1", "solar_panel", 0.05, "production"))
        at += QUARTER
    return readings


DEVICES: tuple[tuple[str, DeviceType], ...] = (
    ("g-1", "smart_meter"), ("pv-1", "solar_panel"), ("ev-1", "ev_charger"),
)  # fmt: skip


def kwh(reading: Reading) -> float:
    assert reading.energy_kwh is not None
    return reading.energy_kwh


def tariff_of(moment: datetime) -> tuple[str, str | None, float]:
    """The tariffs written out by hand: name, period and import price at `moment`."""
    local = moment.astimezone(BERLIN)
    if local.day <= 15:
        if local.weekday() < 5 and 7 <= local.hour < 21:
            return "spring", "peak", 0.40
        return "spring", None, 0.30
    if local.hour >= 22 or local.hour < 6:
        return "summer", "night", 0.20
    return "summer", None, 0.32


@pytest.fixture
def home(database: Database) -> list[Reading]:
    readings = the_month()

    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url, priced=True) as writer:
            async with engine.connect() as conn:
                await record_rates(conn, Prices([SPRING, SUMMER], GRID), date(2026, 3, 1))
                async with conn.begin():
                    await register(conn, [Registration(device, kind, user_id="h-1")
                                          for device, kind in DEVICES], MARCH[0])  # fmt: skip
            for first in range(0, len(readings), 1000):
                await writer.write(WriteBatch(readings[first : first + 1000]))
        await engine.dispose()

    asyncio.run(go())
    return readings


def make_report(database: Database, tmp_path: Path) -> Path:
    config = tmp_path / "meterflow.toml"
    config.write_text(CONFIG)
    out = tmp_path / "report.html"
    shown = meterflow("report", "--config", str(config), "--db", database.url, "--user", "h-1",
                      "--month", "2026-03", "--out", str(out))  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"wrote {out}: h-1 in 2026-03, ")
    return out


@needs_chromium
def test_the_page_a_browser_shows_has_the_months_numbers(
    database: Database, home: list[Reading], tmp_path: Path
) -> None:
    """Use, production, the grid, cost by tariff period, carbon, peak and both ratios, as
    Chromium renders them, equal what the readings add up to: the EV charger's submeter
    adds nothing to the home's use, its energy being in the grid meter's."""
    page = Page(rendered(make_report(database, tmp_path), tmp_path / "profile"), "tariff",
                "period", "day")  # fmt: skip
    grid = [r for r in home if r.device_id == "g-1"]
    imported = sum(kwh(r) for r in grid if r.kind == "consumption")
    exported = sum(kwh(r) for r in grid if r.kind == "production")
    produced = sum(kwh(r) for r in home if r.device_id == "pv-1")
    used = imported + produced - exported
    # What each period's lines must say, priced quarter hour by quarter hour by hand.
    lines: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in grid:
        tariff, period, price = tariff_of(r.recorded_at)
        line = lines[f"tariff={tariff} period={period or ''}"]
        if r.kind == "consumption":
            line[0] += kwh(r)
            line[2] += kwh(r) * price
        else:
            line[1] += kwh(r)
            line[2] -= kwh(r) * 0.08
    cost = sum(line[2] for line in lines.values())

    facts = {name: shown[0] for name, shown in page.facts.items()}
    assert number(facts["used_kwh"]) == pytest.approx(used, abs=0.005)
    assert number(facts["produced_kwh"]) == pytest.approx(produced, abs=0.005)
    assert number(facts["imported_kwh"]) == pytest.approx(imported, abs=0.005)
    assert number(facts["exported_kwh"]) == pytest.approx(exported, abs=0.005)
    assert number(facts["net_kwh"]) == pytest.approx(imported - exported, abs=0.005)
    assert facts["cost"].endswith(" EUR")
    assert number(facts["cost"]) == pytest.approx(cost, abs=0.005)
    assert number(facts["carbon_kg"]) == pytest.approx(imported * 0.380, abs=0.005)
    assert (facts["peak_kw"], facts["peak_at"]) == ("2.40", "Sun 01 Mar, 20:00")
    assert number(facts["self_consumption"]) == pytest.approx(
        100 * (produced - exported) / produced, abs=0.05
    )
    assert number(facts["self_sufficiency"]) == pytest.approx(
        100 * (used - imported) / used, abs=0.05
    )
    assert set(page.rows) >= set(lines)
    for key, (drawn, fed_in, line_cost) in lines.items():
        [[_, _, shown_drawn, shown_fed_in, shown_cost, shown_carbon]] = page.rows[key]
        assert number(shown_drawn) == pytest.approx(drawn, abs=0.005), key
        assert number(shown_fed_in) == pytest.approx(fed_in, abs=0.005), key
        assert number(shown_cost) == pytest.approx(line_cost, abs=0.005), key
        assert number(shown_carbon) == pytest.approx(drawn * 0.380, abs=0.005), key

    by_day: dict[str, float] = defaultdict(float)
    for r in home:
        if r.device_id != "ev-1":
            sign = -1 if r.device_id == "g-1" and r.kind == "production" else 1
            by_day[f"day={r.recorded_at.astimezone(BERLIN).date()}"] += sign * kwh(r)
    days = {key: rows[0] for key, rows in page.rows.items() if key.startswith("day=")}
    assert list(days) == [f"day={date(2026, 3, d)}" for d in range(1, 32)]
    for key, row in days.items():
        assert number(row[1]) == pytest.approx(by_day[key], abs=0.005), key
    # The 29th has 23 hours: an hour's 0.4 kWh less.
    assert number(days["day=2026-03-29"][1]) == pytest.approx(
        number(days["day=2026-03-28"][1]) - 0.4, abs=0.005
    )


@needs_chromium
def test_the_page_agrees_with_the_database_and_needs_nothing_else(
    database: Database, home: list[Reading], tmp_path: Path
) -> None:
    """The grid meter's rollups hold the bill's energy, cost and carbon; the page is one
    file with nothing to fetch, and Chromium draws both charts."""
    out = make_report(database, tmp_path)
    html = out.read_text()
    for outside in ("<script", "<link", "src=", "url(http", "@import"):
        assert outside not in html
    [(energy, cost, carbon)] = database.query(
        "SELECT sum(energy_kwh), sum(cost), sum(carbon) FROM energy_15min "
        "WHERE device_id = 'g-1' AND data_type = 'consumption'"
    )
    [(credit,)] = database.query(
        "SELECT sum(cost) FROM energy_15min WHERE device_id = 'g-1' AND data_type = 'production'"
    )
    page = Page(rendered(out, tmp_path / "profile"))
    assert number(page.facts["imported_kwh"][0]) == pytest.approx(energy, abs=0.005)
    assert number(page.facts["cost"][0]) == pytest.approx(cost + credit, abs=0.005)
    assert number(page.facts["carbon_kg"][0]) == pytest.approx(carbon, abs=0.005)
    picture = tmp_path / "report.png"
    screenshot(out, tmp_path / "profile", picture)
    assert html.count("<svg") == 2
    assert html.count("<rect") > 31 * 96


def test_a_user_without_devices_then_is_told_so(database: Database, tmp_path: Path) -> None:
    """No traceback, no page: the reason and where to look."""
    shown = meterflow("report", "--db", database.url, "--user", "nobody", "--month", "2026-03",
                      "--out", str(tmp_path / "r.html"))  # fmt: skip
    assert shown.exit_code == 1
    assert "no device belonged to user 'nobody' then" in shown.stderr
    assert not (tmp_path / "r.html").exists()
