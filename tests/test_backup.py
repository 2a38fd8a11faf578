"""meterflow backup: consistent while the daemon writes, restorable, private, rotated."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from storage.backup import backup_sqlite
from tests.cli import meterflow
from tests.databases import PostgresDatabase
from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.test_delivery_guarantees import Background, numbered


@pytest.mark.mqtt
async def test_a_backup_taken_while_ingesting_restores_every_row_committed_before_it(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """The restored copy passes integrity_check and holds at least what was committed."""
    backups = tmp_path / "backups"
    async with running_daemon(make_settings(broker.url, db_path, prefix)):
        with Background(broker.port, numbered(prefix, 6000), per_second=3000) as publishing:
            await wait_until(lambda: count_rows(db_path) >= 2000, what="2000 rows")
            committed_before = count_rows(db_path)
            made = await asyncio.to_thread(backup_sqlite, f"sqlite:///{db_path}", backups, key=None)
            publishing.join()
    restored = tmp_path / "restored.db"
    restored.write_bytes(gzip.decompress(made.read_bytes()))
    with closing(sqlite3.connect(restored)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copied = conn.execute("SELECT count(*) FROM energy_data").fetchone()[0]
    assert committed_before <= copied <= 6000
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700


def test_only_the_newest_backups_are_kept(tmp_path: Path) -> None:
    """With keep=2, a third backup removes the oldest."""
    database = tmp_path / "m.db"
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE t (x)")
    url = f"sqlite:///{database}"
    made = [backup_sqlite(url, tmp_path / "b", key=None, keep=2) for _ in range(3)]
    assert sorted((tmp_path / "b").glob("meterflow-*.db.gz")) == made[1:]


@pytest.mark.mqtt
async def test_restore_is_refused_while_a_daemon_uses_the_database_and_works_after(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """restore --force refuses a database a daemon runs on; once stopped, it replaces it."""
    url = f"sqlite:///{db_path}"
    settings = make_settings(broker.url, db_path, prefix)
    async with running_daemon(settings):
        with Background(broker.port, numbered(prefix, 500), per_second=2000) as publishing:
            publishing.join()
        await wait_until(lambda: count_rows(db_path) == 500, what="500 rows")
        made = await asyncio.to_thread(backup_sqlite, url, tmp_path / "backups", key=None)
        refused = await asyncio.to_thread(meterflow, "restore", str(made), "--force", "--db", url)
        assert refused.exit_code == 1
        assert "in use by another meterflow process" in refused.stderr
    with closing(sqlite3.connect(db_path)) as conn:
        for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'energy_data_%'"
        ).fetchall():
            conn.execute(f"DELETE FROM {table}")
        conn.commit()
    assert count_rows(db_path) == 0
    without_force = await asyncio.to_thread(meterflow, "restore", str(made), "--db", url)
    assert "pass --force" in without_force.stderr
    restored = await asyncio.to_thread(meterflow, "restore", str(made), "--force", "--db", url)
    assert restored.exit_code == 0, restored.stderr
    assert count_rows(db_path) == 500
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_file_that_is_not_a_meterflow_database_is_never_restored(tmp_path: Path) -> None:
    """Garbage, or a SQLite file without meterflow's tables: refused, the target untouched."""
    target = tmp_path / "live.db"
    target.write_bytes(b"original")
    garbage = tmp_path / "garbage.db.gz"
    garbage.write_bytes(gzip.compress(b"not a database at all" * 100))
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    for backup in (garbage, other):
        result = meterflow("restore", str(backup), "--force", "--db", f"sqlite:///{target}")
        assert result.exit_code == 1
        assert str(backup) in result.stderr
    assert target.read_bytes() == b"original"


@pytest.mark.postgres
def test_postgres_backup_and_restore_go_through_pg_dump(
    postgres: PostgresDatabase, tmp_path: Path
) -> None:
    """backup writes a pg_dump file; restore --force brings deleted devices back."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not installed (apt-get install postgresql-client)")
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", postgres.url)
    backups = tmp_path / "backups"
    made = meterflow("backup", "--to", str(backups), "--db", postgres.url)
    assert made.exit_code == 0, made.stderr
    [dump] = backups.glob("meterflow-*.pgdump")
    postgres.execute("DELETE FROM iot_devices")
    restored = meterflow("restore", str(dump), "--force", "--db", postgres.url)
    assert restored.exit_code == 0, restored.stderr
    assert postgres.query("SELECT device_id FROM iot_devices") == [("m-1",)]


@pytest.mark.mqtt
@pytest.mark.postgres
async def test_postgres_restore_is_refused_while_a_daemon_is_connected(
    broker: Mosquitto, postgres: PostgresDatabase, prefix: str, tmp_path: Path
) -> None:
    """A daemon's session (application_name meterflow-daemon) blocks a restore."""
    dump = tmp_path / "meterflow-x.pgdump"
    dump.write_bytes(b"PGDMP")
    async with running_daemon(make_settings(broker.url, postgres.url, prefix)):
        refused = await asyncio.to_thread(
            meterflow, "restore", str(dump), "--force", "--db", postgres.url
        )
    assert refused.exit_code == 1
    assert "in use by another meterflow process" in refused.stderr
