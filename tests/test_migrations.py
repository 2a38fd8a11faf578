"""Schema versions: created on an empty database, upgraded on request, refused otherwise."""

from __future__ import annotations

import asyncio
import subprocess

from storage import SCHEMA_VERSION, BatchWriter, open_engine
from tests.databases import Database
from tests.process import METERFLOW


def create_schema(database: Database) -> None:
    async def start_once() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url):
            pass
        await engine.dispose()

    asyncio.run(start_once())


def meterflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METERFLOW, *args], capture_output=True, text=True, timeout=60, check=False
    )


def refuses_to_run(database: Database) -> str:
    """Start `meterflow run` on the database; it must exit with an error. Return the error."""
    done = meterflow("run", "--db", database.url, "--broker", "mqtt://127.0.0.1:9")
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_an_empty_database_gets_the_current_schema_on_first_start(database: Database) -> None:
    """No upgrade step is needed for a new database: the daemon records the version it made."""
    create_schema(database)
    assert database.query("SELECT max(version) FROM meterflow_schema") == [(SCHEMA_VERSION,)]


def test_an_outdated_schema_is_refused_until_db_upgrade_runs(database: Database) -> None:
    """A database from before versioning: `run` names the command; after it, all is well."""
    create_schema(database)
    database.execute("DROP TABLE meterflow_schema")
    error = refuses_to_run(database)
    assert f"database schema is version 0, meterflow needs {SCHEMA_VERSION}" in error
    assert f"run `meterflow db upgrade --db {database.url}` first" in error

    upgraded = meterflow("db", "upgrade", "--db", database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema is at version {SCHEMA_VERSION}" in upgraded.stdout
    assert database.query("SELECT max(version) FROM meterflow_schema") == [(SCHEMA_VERSION,)]
    create_schema(database)


def test_a_newer_schema_is_refused(database: Database) -> None:
    """A database written by a newer meterflow is not touched by an older one."""
    create_schema(database)
    database.execute("INSERT INTO meterflow_schema (version) VALUES (99)")
    assert "this meterflow is older than the database" in refuses_to_run(database)


async def test_daemons_starting_together_on_an_empty_database_create_it_once(
    database: Database,
) -> None:
    """Three writers opening a new database at the same moment: one schema, one version row."""

    async def open_writer() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url):
            pass
        await engine.dispose()

    await asyncio.gather(*(open_writer() for _ in range(3)))
    assert database.query("SELECT version FROM meterflow_schema") == [(SCHEMA_VERSION,)]
