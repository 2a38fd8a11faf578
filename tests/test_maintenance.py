"""meterflow db check / db optimize on a SQLite database the daemon is writing to."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from partitions import Month
from storage.engine import PAGE_SIZE
from tests.cli import meterflow as in_process
from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.test_delivery_guarantees import Background, numbered
from tests.test_migrations import meterflow
from tests.test_retention import ensure_partition


@pytest.mark.mqtt
async def test_check_and_optimize_run_safely_while_the_daemon_ingests(
    broker: Mosquitto, db_path: Path, prefix: str
) -> None:
    """Both commands succeed mid-ingest, and the daemon still stores every reading."""
    url = f"sqlite:///{db_path}"
    async with running_daemon(make_settings(broker.url, db_path, prefix)):
        with Background(broker.port, numbered(prefix, 4000), per_second=3000) as publishing:
            await wait_until(lambda: count_rows(db_path) >= 1000, what="1000 rows")
            checked = await asyncio.to_thread(meterflow, "db", "check", "--db", url)
            optimized = await asyncio.to_thread(meterflow, "db", "optimize", "--db", url)
            publishing.join()
        await wait_until(lambda: count_rows(db_path) == 4000, what="all 4000 rows")
    assert checked.returncode == 0, checked.stderr
    assert "integrity: ok" in checked.stdout
    assert "50 devices" in checked.stdout
    assert optimized.returncode == 0, optimized.stderr


def test_check_refuses_a_database_url_it_cannot_check() -> None:
    """On PostgreSQL (or a missing file) the command says what it works on."""
    done = meterflow("db", "check", "--db", "sqlite:////nonexistent/meterflow.db")
    assert done.returncode == 1
    assert "no database at /nonexistent/meterflow.db" in done.stderr


def test_optimize_returns_the_pages_of_an_archived_month_to_the_file_system(
    db_path: Path, tmp_path: Path
) -> None:
    """A new database vacuums incrementally: after archiving a month, the file shrinks."""
    url = f"sqlite:///{db_path}"
    in_process("devices", "register", "m-1", "--type", "smart_meter", "--db", url)
    in_process("partitions", "create", "--ahead", "0", "--db", url)
    _fill(db_path, Month(2025, 3), 20_000)
    size_before = db_path.stat().st_size
    archived = in_process("partitions", "archive", "2025-03", "--to", str(tmp_path), "--db", url)
    assert archived.exit_code == 0, archived.output
    optimized = in_process("db", "optimize", "--db", url)
    freed = int(optimized.output.split("; ")[1].split()[0])
    assert freed > 100
    assert db_path.stat().st_size < size_before / 2


def test_a_new_database_has_large_pages_and_one_made_before_keeps_its_own(
    tmp_path: Path,
) -> None:
    """PAGE_SIZE takes effect in a new file only: a database made with SQLite's default
    pages (as every one was before) goes on with them, its readings stored and checked."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.execute("CREATE TABLE made_before (x)")
    for path in (new, old):
        url = f"sqlite:///{path}"
        assert in_process("devices", "list", "--db", url).exit_code == 0  # the schema
        _fill(path, Month(2025, 3), 5_000)
        assert in_process("db", "check", "--db", url).output.startswith("integrity: ok")
    sizes = {}
    for path in (new, old):
        with closing(sqlite3.connect(path)) as conn:
            [(sizes[path.name],)] = conn.execute("PRAGMA page_size").fetchall()
            assert conn.execute("SELECT count(*) FROM energy_data").fetchall() == [(5_000,)]
    assert sizes == {"new.db": PAGE_SIZE, "old.db": 4096}


def _fill(db_path: Path, month: Month, rows: int) -> None:
    """`rows` readings a minute apart from the start of `month`, written by SQL."""
    asyncio.run(ensure_partition(f"sqlite:///{db_path}", month))
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO {month.table_name} (device_id, data_type, energy_amount, "
            "instantaneous_power, recorded_at, quality, metadata, created_at) "
            "SELECT 'm-1', 'consumption', 0.5, 1.0, "
            "strftime('%Y-%m-%d %H:%M:%f', ?, '+' || i || ' minutes'), 'good', "
            '\'{"note": "padding to make the month weigh something"}\', CURRENT_TIMESTAMP '
            "FROM n",
            (rows - 1, f"{month.start:%Y-%m-%d %H:%M:%S}"),
        )
        conn.commit()
