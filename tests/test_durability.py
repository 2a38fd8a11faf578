"""Durable acknowledgement: a commit the daemon acknowledges messages on is on disk, on
either backend, whatever the server's default; and the daemon says so when it starts."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from storage import open_engine
from storage.engine import DAEMON_APPLICATION, durability
from tests.databases import Database, PostgresDatabase
from tests.helpers import make_settings, running_daemon
from tests.mosquitto import Mosquitto


async def test_a_daemon_connection_commits_durably_by_default(database: Database) -> None:
    engine = open_engine(database.url, application=DAEMON_APPLICATION)
    async with engine.connect() as conn:
        setting, value, durable = await durability(conn)
    await engine.dispose()
    expected = (
        ("synchronous_commit", "on") if database.kind == "postgres" else ("synchronous", "FULL")
    )
    assert (setting, value, durable) == (*expected, True)


@pytest.mark.postgres
async def test_postgres_commits_synchronously_where_the_server_default_is_off(
    postgres: PostgresDatabase,
) -> None:
    postgres.execute(f"ALTER DATABASE {postgres.name} SET synchronous_commit = off")
    assert postgres.query("SHOW synchronous_commit") == [("off",)]
    engine = open_engine(postgres.url, application=DAEMON_APPLICATION)
    async with engine.connect() as conn:
        assert await durability(conn) == ("synchronous_commit", "on", True)
    await engine.dispose()


@pytest.mark.mqtt
@pytest.mark.parametrize(("level", "event"), [
    ("FULL", "commits reach the disk before acknowledgement"),
    ("NORMAL", "commits are acknowledged before they reach the disk"),
])  # fmt: skip
async def test_the_daemon_says_at_start_whether_acknowledged_commits_survive_power_loss(
    broker: Mosquitto, database: Database, prefix: str, level: str, event: str
) -> None:
    if database.kind == "postgres" and level == "NORMAL":
        pytest.skip("sqlite_synchronous is SQLite's")
    settings = make_settings(
        broker.url, database.url, prefix, **{"storage.sqlite_synchronous": level}
    )
    with capture_logs() as logs:
        async with running_daemon(settings):
            pass
    said = [line for line in logs if line["event"].startswith(event)]
    assert len(said) == 1, logs
