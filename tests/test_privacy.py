"""`meterflow privacy export`: everything meterflow keeps of a user or a device, live and
archived, in owner-only files with a manifest; nothing of anyone else's. Both backends.

u-1 owns m-1, u-2 owns m-2; both report every hour of 2 March and 2 April 2026, m-1 also
a counter; a malformed message came on m-1's topic. March is archived.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage import (
    BatchWriter,
    DeadLetter,
    Reading,
    SQLiteOptions,
    WriteBatch,
    open_engine,
    registry,
)
from storage.registry import Registration
from tests.cli import meterflow
from tests.databases import Database

DAYS = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))


def load(
    database: Database, first: str = "m-1", second: str = "m-2", key: str | None = None
) -> None:
    """Two meters, `first` u-1's and `second` u-2's, as the module docstring says; into a
    SQLite database encrypted with `key`, if given."""

    async def go() -> None:
        engine = open_engine(database.url, SQLiteOptions(key=key))
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await registry.register(conn, [Registration(first, "smart_meter", "u-1"),
                                               Registration(second, "smart_meter", "u-2")],
                                        DAYS[0])  # fmt: skip
            readings = [
                Reading("t", device, "smart_meter", day + timedelta(hours=h), 0.25, 1.0)
                for device in (first, second) for day in DAYS for h in range(24)
            ]  # fmt: skip
            readings.append(Reading("t", first, "smart_meter", DAYS[1] + timedelta(minutes=30),
                                    None, None, counter="import", counter_kwh=1234.5))  # fmt: skip
            letter = DeadLetter(f"meters/smart_meter/{first}/telemetry", b'{"ts": "soon"}',
                                "ts: not a time", DAYS[1])  # fmt: skip
            other = DeadLetter(f"meters/smart_meter/{second}/telemetry", b"{}", "empty", DAYS[1])
            await writer.write(WriteBatch(readings, [letter, other]))
        await engine.dispose()

    asyncio.run(go())


def exported(directory: Path, name: str) -> list[dict[str, Any]]:
    lines = (directory / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_users_export_holds_all_of_theirs_live_and_archived_and_nothing_else(
    database: Database, tmp_path: Path
) -> None:
    """m-1's 48 readings (its counter's first value is held, not stored as a reading), its
    rollups, registry row, ownership, counter and dead letter; the files owner-only and as
    the manifest counts and checksums them."""
    load(database)
    archive = tmp_path / "archive"
    archived = meterflow("partitions", "archive", "2026-03", "--to", str(archive),
                         "--db", database.url)  # fmt: skip
    assert archived.exit_code == 0, archived.output
    out = tmp_path / "u-1"
    done = meterflow("privacy", "export", "--user", "u-1", "--out", str(out), "--archive-dir",
                     str(archive), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output

    readings = exported(out, "energy_data")
    assert {r["device_id"] for r in readings} == {"m-1"}
    assert len(readings) == 48
    assert sum(r["energy_amount"] or 0 for r in readings) == 48 * 0.25
    months = {str(r["recorded_at"])[:7] for r in readings}
    assert months == {"2026-03", "2026-04"}  # the archived month too
    for name in ("energy_15min", "energy_hourly", "energy_daily", "energy_monthly",
                 "iot_devices", "meter_counters", "device_owners", "dead_letters"):  # fmt: skip
        rows = exported(out, name)
        assert rows, name
        assert all(r.get("device_id", "m-1") == "m-1" for r in rows), name
    assert [r["user_id"] for r in exported(out, "device_owners")] == ["u-1"]
    [counter] = exported(out, "meter_counters")
    assert counter["value_kwh"] == 1234.5
    [letter] = exported(out, "dead_letters")
    assert letter["topic"] == "meters/smart_meter/m-1/telemetry"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["person"] == {"kind": "user", "id": "u-1"}
    for name, entry in manifest["files"].items():
        body = (out / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["rows"] == len(body.splitlines())
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert "m-2" not in "".join(p.read_text() for p in out.iterdir())


def test_a_devices_export_equals_what_queries_return(database: Database, tmp_path: Path) -> None:
    """Its readings are the rows `query sql` counts and sums; its days what `query energy`
    gives."""
    load(database)
    out = tmp_path / "m-2"
    done = meterflow("privacy", "export", "--device", "m-2", "--format", "csv", "--out",
                     str(out), "--db", database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    lines = (out / "energy_data.csv").read_text().splitlines()
    [(count, energy)] = database.query(
        "SELECT count(*), sum(energy_amount) FROM energy_data WHERE device_id = 'm-2'"
    )
    assert len(lines) - 1 == count == 48
    days = meterflow("query", "energy", "--device", "m-2", "--every", "month", "--from",
                     "2026-03-01", "--to", "2026-04-30", "--tz", "UTC", "--format", "json",
                     "--db", database.url)  # fmt: skip
    assert sum(m["consumption_kwh"] for m in json.loads(days.output)) == energy == 12.0
    again = meterflow("privacy", "export", "--device", "m-2", "--out", str(out),
                      "--db", database.url)  # fmt: skip
    assert again.exit_code == 1
    assert "is not empty: give a new directory" in again.stderr


def test_a_users_export_holds_nothing_of_the_next_owner_of_a_meter_they_sold(
    database: Database, tmp_path: Path
) -> None:
    """u-1 sold m-1 to u-3 on 3 April: u-3's readings, dead letter, the registry row and
    counter (u-3's now) are not in u-1's export."""
    load(database)
    sold = datetime(2026, 4, 3, tzinfo=UTC)

    async def sell() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            async with engine.begin() as conn:
                await registry.register(conn, [Registration("m-1", "smart_meter", "u-3")], sold)
            later = sold + timedelta(hours=1)
            letter = DeadLetter("meters/smart_meter/m-1/telemetry", b"{}", "u-3's", later)
            await writer.write(WriteBatch(
                [Reading("t", "m-1", "smart_meter", later, 0.5, 2.0)], [letter]
            ))  # fmt: skip
        await engine.dispose()

    asyncio.run(sell())
    out = tmp_path / "u-1"
    done = meterflow("privacy", "export", "--user", "u-1", "--out", str(out), "--db",
                     database.url)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert len(exported(out, "energy_data")) == 48
    assert [r["reason"] for r in exported(out, "dead_letters")] == ["ts: not a time"]
    assert exported(out, "iot_devices") == exported(out, "meter_counters") == []
    assert "u-3" not in "".join(p.read_text() for p in out.iterdir())
