"""meterflow backup: consistent while the daemon writes, restorable, private, rotated."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from storage.backup import backup_sqlite
from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.test_delivery_guarantees import Background, numbered

pytestmark = pytest.mark.mqtt


async def test_a_backup_taken_while_ingesting_restores_every_row_committed_before_it(
    broker: Mosquitto, db_path: Path, prefix: str, tmp_path: Path
) -> None:
    """The restored copy passes integrity_check and holds at least what was committed."""
    backups = tmp_path / "backups"
    async with running_daemon(make_settings(broker.url, db_path, prefix)):
        with Background(broker.port, numbered(prefix, 6000), per_second=3000) as publishing:
            await wait_until(lambda: count_rows(db_path) >= 2000, what="2000 rows")
            committed_before = count_rows(db_path)
            made = await asyncio.to_thread(backup_sqlite, f"sqlite:///{db_path}", backups)
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
    made = [backup_sqlite(f"sqlite:///{database}", tmp_path / "b", keep=2) for _ in range(3)]
    assert sorted((tmp_path / "b").glob("meterflow-*.db.gz")) == made[1:]
