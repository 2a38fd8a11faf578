"""PostgreSQL: readings parked in a DEFAULT partition are reported and moved where they belong."""

from __future__ import annotations

import asyncio

import pytest

from storage import BatchWriter, open_engine
from tests.databases import Database, count_readings, partition_tables
from tests.test_migrations import meterflow

pytestmark = pytest.mark.postgres


def stray_rows(database: Database) -> int:
    async def ask() -> int:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            rows = await writer.stray_rows()
        await engine.dispose()
        return rows

    return asyncio.run(ask())


def test_readings_in_a_default_partition_are_reported_and_repaired(postgres: Database) -> None:
    """An operator's DEFAULT partition caught 8 readings of two months; repair moves them."""
    assert stray_rows(postgres) == 0
    postgres.execute("CREATE TABLE energy_data_default PARTITION OF energy_data DEFAULT")
    postgres.execute(
        "INSERT INTO iot_devices (device_id, device_type) VALUES ('d1', 'smart_meter')"
    )
    for month, hours in (("2025-05", 5), ("2025-07", 3)):
        postgres.execute(
            "INSERT INTO energy_data (device_id, data_type, energy_amount, instantaneous_power,"
            " recorded_at) SELECT 'd1', 'consumption', 0.5, 1.0,"
            f" '{month}-10T00:00:00Z'::timestamptz + n * interval '1 hour'"
            f" FROM generate_series(1, {hours}) AS n"
        )
    assert postgres.query("SELECT count(*) FROM energy_data_default") == [(8,)]
    assert stray_rows(postgres) == 8

    repaired = meterflow("partitions", "repair", "--db", postgres.url)
    assert repaired.returncode == 0, repaired.stderr
    assert "2025-05: moved 5 readings into energy_data_2025_05" in repaired.stdout
    assert "2025-07: moved 3 readings into energy_data_2025_07" in repaired.stdout
    assert postgres.query("SELECT count(*) FROM energy_data_default") == [(0,)]
    assert {"energy_data_2025_05", "energy_data_2025_07"} <= partition_tables(postgres)
    assert postgres.query("SELECT count(*) FROM energy_data_2025_05") == [(5,)]
    assert count_readings(postgres) == 8
    assert stray_rows(postgres) == 0
