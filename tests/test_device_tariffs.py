"""Tariffs assigned to devices: a heat pump on a meter and tariff of its own is priced by
that tariff while it holds and by its owner's otherwise, its carbon always its owner's;
the home's bill puts its energy on its own tariff's line. Both backends.

March 2026, UTC. User u-1 has tariff "home" (0.30, feed-in 0.08) and the grid zone FR
(56 g CO2/kWh, everyone else DE at 380). Their heat pump's meter hp-1 has tariff
"heatpump" (0.20) from the 10th to the 20th. Both meters draw 0.1 kWh every quarter hour.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from storage import Reading
from storage.owners import BEGINNING
from storage.prices import Prices
from storage.tariffs import CarbonSettings, Tariff, check_tariffs, timeline
from tests.cli import meterflow
from tests.databases import Database
from tests.test_costs import MARCH, QUARTER
from tests.test_self_consumption import home

HOME = Tariff(name="home", valid_from=date(2026, 1, 1), users=["u-1"], import_price=0.30,
              export_price=0.08)  # fmt: skip
HEAT_PUMP = Tariff(name="heatpump", valid_from=date(2026, 3, 10), valid_to=date(2026, 3, 20),
                   devices=["hp-1"], import_price=0.20)  # fmt: skip
GRID = CarbonSettings(zone="DE", intensity_g_per_kwh={"DE": 380.0, "FR": 56.0},
                      user_zones={"u-1": "FR"})  # fmt: skip
CONFIG = """
[[tariffs]]
name = "home"
valid_from = 2026-01-01
users = ["u-1"]
import_price = 0.30
export_price = 0.08

[[tariffs]]
name = "heatpump"
valid_from = 2026-03-10
valid_to = 2026-03-20
devices = ["hp-1"]
import_price = 0.20

[carbon]
zone = "DE"
intensity_g_per_kwh = { DE = 380.0, FR = 56.0 }
user_zones = { u-1 = "FR" }
"""
DAYS = 31
QUARTERS = DAYS * 96


def test_a_device_tariff_names_devices_and_two_for_one_device_at_once_are_refused() -> None:
    """A tariff is for users or for devices; two valid for one device at once cannot both
    price it."""
    with pytest.raises(ValidationError, match="names users and devices"):
        Tariff(name="x", valid_from=date(2026, 1, 1), import_price=0.1, users=["u"],
               devices=["d"])  # fmt: skip
    other = HEAT_PUMP.model_copy(update={"name": "other", "valid_from": date(2026, 3, 19)})
    with pytest.raises(ValueError, match="'heatpump' and 'other' are both valid for hp-1"):
        check_tariffs([HEAT_PUMP, other])
    check_tariffs([HOME, HEAT_PUMP])  # a device's and its owner's: the device's first


def test_a_devices_rates_say_when_its_tariff_holds_and_carry_no_carbon() -> None:
    """Outside its tariff a device's row has no tariff, so the owner's rates price it."""
    rates = [r for r in timeline([HOME, HEAT_PUMP], GRID, date(2026, 3, 1))
             if r.subject == "device:hp-1"]  # fmt: skip
    assert [(r.since.date(), r.tariff, r.import_price, r.carbon_g_per_kwh) for r in rates] == [
        (BEGINNING.date(), None, None, None),
        (date(2026, 3, 10), "heatpump", 0.20, None),
        (date(2026, 3, 20), None, None, None),
    ]


def store(database: Database) -> None:
    readings = [
        Reading("t", device, "smart_meter", MARCH_UTC + i * QUARTER + timedelta(minutes=7),
                0.1, 0.4)
        for device in ("g-1", "hp-1")
        for i in range(QUARTERS)
    ]  # fmt: skip
    home(database, [("g-1", "smart_meter", "u-1", None), ("hp-1", "smart_meter", "u-1", None)],
         readings, prices=Prices([HOME, HEAT_PUMP], GRID))  # fmt: skip


MARCH_UTC = MARCH[0] + timedelta(hours=1)  # 1 March 00:00 UTC
HEAT_PUMP_QUARTERS = 10 * 96


def test_a_devices_tariff_prices_it_while_it_holds_and_its_owners_otherwise(
    database: Database,
) -> None:
    """hp-1: 10 days at 0.20, 21 at the owner's 0.30; carbon at the owner's zone all
    month. g-1: the owner's tariff throughout."""
    store(database)
    [(pump_cost, pump_carbon)] = database.query(
        "SELECT sum(cost), sum(carbon) FROM energy_monthly WHERE device_id = 'hp-1'"
    )
    assert pump_cost == pytest.approx(0.1 * (HEAT_PUMP_QUARTERS * 0.20
                                             + (QUARTERS - HEAT_PUMP_QUARTERS) * 0.30))  # fmt: skip
    assert pump_carbon == pytest.approx(0.1 * QUARTERS * 0.056)
    [(meter_cost,)] = database.query("SELECT sum(cost) FROM energy_monthly WHERE device_id = 'g-1'")
    assert meter_cost == pytest.approx(0.1 * QUARTERS * 0.30)


def test_the_bill_puts_a_meters_own_tariff_on_its_own_line(
    database: Database, tmp_path: Path
) -> None:
    """Two grid meters, one on its own tariff: `query energy --user` costs what their
    rollups do, and the report's lines split the heat pump's ten days off."""
    store(database)
    config = tmp_path / "meterflow.toml"
    config.write_text(CONFIG)
    shown = meterflow("query", "energy", "--config", str(config), "--db", database.url,
                      "--user", "u-1", "--every", "month", "--from", "2026-03-01", "--to",
                      "2026-03-31", "--tz", "UTC", "--format", "json")  # fmt: skip
    [month] = json.loads(shown.output)
    [(rolled,)] = database.query("SELECT sum(cost) FROM energy_monthly")
    assert month["cost"] == pytest.approx(rolled, abs=1e-6)
    out = tmp_path / "report.html"
    made = meterflow("report", "--config", str(config), "--db", database.url, "--user", "u-1",
                     "--month", "2026-03", "--tz", "UTC", "--out", str(out))  # fmt: skip
    assert made.exit_code == 0, made.output
    page = out.read_text()
    assert '<tr data-tariff="heatpump" data-period="">' in page
    lines = page.split('data-tariff="heatpump"')[1].split("</tr>")[0]
    assert f'<td class="n">{0.1 * HEAT_PUMP_QUARTERS:,.2f}</td>' in lines
    assert f"{0.1 * HEAT_PUMP_QUARTERS * 0.20:,.2f} EUR" in lines
