"""Each reading's own `cost` and `carbon_footprint` in `energy_data`, as the product's
schema has them: its energy at its owner's rate in each quarter hour it covers, so a
device's readings add up to its rollups' cost and carbon; on both backends.

Tariffs and grid as in test_costs: in Berlin on weekdays until 15 March, 0.40 from 07:00
to 21:00, else 0.30; 0.08 for feed-in; 380 g CO2 per kWh.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import Reading
from storage.prices import Prices
from tests.cli import meterflow
from tests.databases import Database
from tests.test_costs import GRID, SPRING, SUMMER, march, store
from tests.test_report import CONFIG

# Tuesday 10 March 2026, 06:50 Berlin time (CET, +01:00).
BEFORE_PEAK = datetime(2026, 3, 10, 5, 50, tzinfo=UTC)


def reading_costs(database: Database) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    rows = database.query(
        "SELECT device_id, recorded_at, cost, carbon_footprint FROM energy_data "
        "WHERE device_id IN ('c-1', 'c-2', 'pv-9')"
    )
    return {(device, str(at)[11:16]): (cost, carbon) for device, at, cost, carbon in rows}


def test_a_reading_across_a_price_change_costs_each_part_at_its_price(database: Database) -> None:
    """2 kWh over 06:55-07:15 (a counter's interval): 0.5 kWh before peak at 0.30 and 1.5
    in it at 0.40 is 0.75; 0.76 kg CO2. A reading within one quarter hour costs its energy
    at that price; energy fed in is a credit without carbon."""
    readings = [
        Reading("t", "c-1", "smart_meter", BEFORE_PEAK + timedelta(minutes=25), 2.0, None,
                interval_start=BEFORE_PEAK + timedelta(minutes=5)),
        Reading("t", "c-2", "smart_meter", BEFORE_PEAK + timedelta(minutes=30), 0.5, 1.0),
        Reading("t", "pv-9", "solar_panel", BEFORE_PEAK + timedelta(minutes=30), 0.25, 1.0),
    ]  # fmt: skip
    store(database, Prices([SPRING, SUMMER], GRID), readings)
    costs = reading_costs(database)
    assert costs[("c-1", "06:15")] == pytest.approx((0.5 * 0.30 + 1.5 * 0.40, 2.0 * 0.380))
    assert costs[("c-2", "06:20")] == pytest.approx((0.5 * 0.40, 0.5 * 0.380))
    cost, carbon = costs[("pv-9", "06:20")]
    assert cost == pytest.approx(-0.25 * 0.08)
    assert carbon is None


def test_without_tariffs_or_carbon_a_reading_has_no_cost(database: Database) -> None:
    """Nothing configured prices nothing: NULL, not 0."""
    store(database, Prices(), [Reading("t", "c-1", "smart_meter", BEFORE_PEAK, 1.0, 1.0)])
    assert database.query("SELECT cost, carbon_footprint FROM energy_data") == [(None, None)]


def test_a_devices_readings_add_up_to_its_rollups_cost_and_carbon(database: Database) -> None:
    """A month of readings across the clock change and a tariff change, some spread over
    the quarter hours before theirs: their costs and carbon sum to each rollup's."""
    readings = march("m-1", "smart_meter", 0.1)
    # A meter back after an hour offline: its energy spreads over the hour it missed.
    spread = [Reading("t", "m-3", "smart_meter", r.recorded_at, 1.0, None,
                      interval_start=r.recorded_at - timedelta(hours=1))
              for r in readings[::8]]  # fmt: skip
    store(database, Prices([SPRING, SUMMER], GRID), readings + spread)
    for device in ("m-1", "m-3"):
        [(cost, carbon, count)] = database.query(
            "SELECT sum(cost), sum(carbon_footprint), count(cost) FROM energy_data "
            f"WHERE device_id = '{device}'"
        )
        assert count == len(readings if device == "m-1" else spread)
        for table in ("energy_15min", "energy_monthly"):
            [(rolled_cost, rolled_carbon)] = database.query(
                f"SELECT sum(cost), sum(carbon) FROM {table} WHERE device_id = '{device}'"
            )
            assert cost == pytest.approx(rolled_cost, rel=1e-12), (device, table)
            assert carbon == pytest.approx(rolled_carbon, rel=1e-12), (device, table)


def test_verify_finds_a_reading_priced_otherwise_and_recompute_mends_it(
    database: Database, tmp_path: Path
) -> None:
    """A reading whose cost no longer matches the rates is named by `db verify` with the
    fix; `costs recompute` over its day prices it again from the rates."""
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1))
    table = "energy_data" if database.kind == "postgres" else "energy_data_2026_03"
    database.execute(
        f"UPDATE {table} SET cost = 1.0 WHERE recorded_at = "
        f"(SELECT min(recorded_at) FROM {table} WHERE recorded_at >= '2026-03-10')"
    )
    refused = meterflow("db", "verify", "--db", database.url)
    assert refused.exit_code == 1
    assert "2026-03: 1 rows' cost or carbon differ from the rates" in refused.output
    assert "energy_data m-1 consumption 2026-03-10T00:07:30+00:00: cost 1.0, carbon" in (
        refused.output
    )
    config = tmp_path / "meterflow.toml"
    config.write_text(CONFIG)  # the tariffs the readings were priced with
    mended = meterflow("costs", "recompute", "--config", str(config), "--db", database.url,
                       "--from", "2026-03-10", "--to", "2026-03-10")  # fmt: skip
    assert " and 96 readings" in mended.output, mended.output
    assert "cost and carbon match the rates" in meterflow("db", "verify", "--db",
                                                          database.url).output  # fmt: skip


def test_the_export_carries_each_readings_cost_and_carbon(
    database: Database, tmp_path: Path
) -> None:
    """`meterflow export` writes the columns as stored: its month's costs add up to the
    monthly rollup's."""
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1))
    done = meterflow("export", "--from", "2026-03", "--to", "2026-03", "--format", "csv",
                     "--out", str(tmp_path), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    with (tmp_path / "energy_data_2026_03.csv").open(newline="") as exported:
        rows = list(csv.DictReader(exported))
    [(cost, carbon)] = database.query(
        "SELECT sum(cost), sum(carbon) FROM energy_monthly WHERE month >= '2026-03-01'"
    )
    assert sum(float(row["cost"]) for row in rows) == pytest.approx(cost, rel=1e-12)
    assert sum(float(row["carbon_footprint"]) for row in rows) == pytest.approx(carbon, rel=1e-12)


def test_a_parquet_export_types_cost_and_carbon_as_numbers(
    database: Database, tmp_path: Path
) -> None:
    """As every measure: float64 columns a dataframe sums without casting."""
    pq = pytest.importorskip("pyarrow.parquet")
    store(database, Prices([SPRING, SUMMER], GRID), march("m-1", "smart_meter", 0.1)[:8])
    done = meterflow("export", "--from", "2026-02", "--to", "2026-02", "--format", "parquet",
                     "--out", str(tmp_path), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    table = pq.read_table(tmp_path / "energy_data_2026_02.parquet")
    for name in ("cost", "carbon_footprint", "state_of_charge"):
        assert str(table.schema.field(name).type) == "double", name
    # The first hour of March in Berlin is the last of February in UTC.
    assert sum(table.column("cost").to_pylist()) == pytest.approx(4 * 0.1 * 0.30)
