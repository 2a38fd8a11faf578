"""The audit trail: each command that reads or changes personal data appends who, when,
what and how many rows to `audit_log`; `meterflow audit list` shows it. Both backends."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import BatchWriter, Reading, WriteBatch, open_engine
from tests.cli import meterflow
from tests.databases import Database

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def store(database: Database) -> None:
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            await writer.write(WriteBatch([
                Reading("t", "m-1", "smart_meter", DAY + timedelta(hours=h), 0.5, 1.0)
                for h in range(24)
            ]))  # fmt: skip
        await engine.dispose()

    asyncio.run(go())


def trail(database: Database, *args: str) -> list[dict[str, Any]]:
    shown = meterflow("audit", "list", "--db", database.url, "--format", "json", *args)
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.output)  # type: ignore[no-any-return]


def test_reads_and_changes_of_personal_data_are_in_the_trail(
    database: Database, tmp_path: Path
) -> None:
    """A registration, a query and an export: who (--actor, METERFLOW_ACTOR, else the OS
    user), the command, what about, how many rows; the daemon's readings are not in it."""
    store(database)
    assert trail(database) == []
    meterflow("--actor", "dpo@example.org", "devices", "register", "m-1", "--type",
              "smart_meter", "--user", "u-1", "--db", database.url)  # fmt: skip
    meterflow("query", "energy", "--device", "m-1", "--every", "hour", "--from",
              "2026-03-02", "--to", "2026-03-02", "--tz", "UTC", "--db", database.url)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METERFLOW_ACTOR", "analyst-7")
        meterflow("export", "--from", "2026-03", "--to", "2026-03", "--format", "csv",
                  "--out", str(tmp_path), "--db", database.url)  # fmt: skip
    entries = trail(database)
    assert [(e["actor"], e["command"], e["target"], e["rows"]) for e in entries] == [
        ("dpo@example.org", "devices register", "device m-1 user u-1", 1),
        (getpass.getuser(), "query energy", "device m-1", 24),
        ("analyst-7", "export", "2026-03..2026-03", 24),
    ]
    started = datetime.fromisoformat(entries[1]["at"])
    assert datetime.now(UTC) - started < timedelta(minutes=5)
    assert [e["command"] for e in trail(database, "--since", entries[1]["at"])] == [
        "query energy", "export"
    ]  # fmt: skip


def test_a_restore_is_in_the_restored_databases_trail(tmp_path: Path) -> None:
    """The trail lives in the database: a restore replaces it by the backup's, then says
    that it happened."""
    db = tmp_path / "data" / "meterflow.db"
    url = f"sqlite:///{db}"
    meterflow("devices", "register", "m-1", "--type", "smart_meter", "--db", url)
    made = meterflow("backup", "--db", url, "--to", str(tmp_path / "backups"))
    assert made.exit_code == 0, made.output
    backup = next((tmp_path / "backups").iterdir())
    meterflow("devices", "register", "m-2", "--type", "smart_meter", "--db", url)
    restored = meterflow("restore", str(backup), "--force", "--db", url)
    assert restored.exit_code == 0, restored.output
    shown = meterflow("audit", "list", "--db", url, "--format", "json")
    assert [(e["command"], e["target"]) for e in json.loads(shown.output)] == [
        ("devices register", "device m-1"),
        ("restore", f"backup {backup.name}"),
    ]
