"""meterflow db check / db optimize on a SQLite database the daemon is writing to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.test_delivery_guarantees import Background, numbered
from tests.test_migrations import meterflow

pytestmark = pytest.mark.mqtt


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
