"""600 monthly partitions: past SQLite's 500-term compound SELECT, energy_data still works."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from partitions import Month, months_back
from storage import BatchWriter, Reading, WriteBatch, open_engine
from tests.cli import meterflow

MONTHS = 600


async def test_six_hundred_months_are_one_energy_data_that_queries_use_indexes(
    db_path: Path, tmp_path: Path
) -> None:
    """A reading in each of 600 months: the view counts 600, finds one month by index."""
    url = f"sqlite:///{db_path}"
    newest = Month(2026, 11)
    months = [months_back(newest, n) for n in range(MONTHS)]
    readings = [
        Reading("t", "m-1", "smart_meter", datetime(m.year, m.month, 15, tzinfo=UTC), 0.5, 1.0)
        for m in months
    ]
    engine = open_engine(url)
    async with BatchWriter(engine, url=url) as writer:
        await writer.write(WriteBatch(readings))
    await engine.dispose()

    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM energy_data").fetchone() == (MONTHS,)
        one_day = (
            "SELECT energy_amount FROM energy_data WHERE device_id = 'm-1' "
            "AND recorded_at >= '1977-01-01' AND recorded_at < '1977-02-01'"
        )
        assert conn.execute(one_day).fetchall() == [(0.5,)]
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {one_day}"))
        assert "USING INDEX sqlite_autoindex_energy_data_1977_01_1" in plan
        assert "SCAN energy_data_1977_01" not in plan

    # Archiving one month rebuilds the two-level view; query sql reads through it.
    archived = await asyncio.to_thread(
        meterflow, "partitions", "archive", "1977-01", "--to", str(tmp_path), "--db", url
    )
    assert archived.exit_code == 0, archived.output
    counted = await asyncio.to_thread(
        meterflow, "query", "sql", "SELECT count(*) AS n FROM energy_data", "--db", url,
        "--include-archive", "--archive-dir", str(tmp_path), "--format", "csv",
    )  # fmt: skip
    assert counted.output.splitlines() == ["n", str(MONTHS)]
