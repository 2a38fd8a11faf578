"""The simulator, as the demo uses it: its readings are stored, its bad messages rejected."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from meterflow.cli import main
from meterflow.simulate import SimulatedDevice, irradiance_wm2, meter_power_kw, reading
from tests.helpers import make_settings, running_daemon, scalar, wait_until
from tests.mosquitto import Mosquitto


@pytest.mark.mqtt
async def test_simulated_fleet_is_stored_and_its_malformed_messages_become_dead_letters(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """`meterflow simulate` with a bad fraction: every message ends as a row or a dead letter;
    with --users the devices have owners, and battery devices their own levels."""
    async with running_daemon(make_settings(broker.url, db_path, prefix)) as daemon:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["simulate", "--broker", broker.url, "--devices", "20", "--rate", "400",
             "--duration", "1", "--bad-fraction", "0.1", "--seed", "3", "--users", "4",
             "--db", f"sqlite:///{db_path}"],
            env={"METERFLOW_MQTT__TOPIC_PREFIX": prefix},
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "published 400 messages" in result.output
        await wait_until(
            lambda: daemon.stats.stored + daemon.stats.rejected.total() == 400, what="400 messages"
        )
    assert 0 < daemon.stats.rejected.total() < 80
    assert scalar(db_path, "SELECT count(*) FROM iot_devices") == 20
    assert scalar(db_path, "SELECT count(DISTINCT data_type) FROM energy_data") == 2
    assert scalar(db_path, "SELECT count(DISTINCT user_id) FROM iot_devices") == 4
    assert scalar(db_path, "SELECT count(DISTINCT user_id) FROM energy_data") == 4
    with_battery = scalar(db_path, "SELECT count(battery_level) FROM iot_devices")
    levels = scalar(db_path, "SELECT count(DISTINCT battery_level) FROM iot_devices")
    assert with_battery >= 3
    # Levels are drawn per device to 0.1 %: two may meet, one shared level would be 1.
    assert levels > with_battery // 2


def test_meters_peak_in_the_evening_and_panels_are_dark_at_night() -> None:
    """The load curve and daylight shape the simulated values."""
    rng = random.Random(1)
    night = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    evening = datetime(2026, 6, 1, 19, 0, tzinfo=UTC)
    assert meter_power_kw(evening, 1.0, rng) > 2 * meter_power_kw(night, 1.0, rng)
    assert irradiance_wm2(night, rng) == 0.0
    panel = SimulatedDevice("pv-1", "solar_panel", 5.0, has_battery=False)
    document = reading(panel, night, 60.0, rng)
    assert (document["power_kw"], document["energy_kwh"]) == (0.0, 0.0)
