"""Rollups checked against the readings they sum: `db verify` names every rollup row that
differs from its readings, and `db rebuild-rollups` makes them equal again."""

from __future__ import annotations

import contextlib
import csv
import gzip
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage import Reading
from tests.databases import Database, as_utc
from tests.helpers import store_batches
from tests.test_migrations import meterflow

T0 = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # readings on both sides of a month's end


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _day(at: datetime) -> datetime:
    return _hour(at).replace(hour=0)


def _month(at: datetime) -> datetime:
    return _day(at).replace(day=1)


# Each rollup's bucket column, and the UTC bucket a reading time falls into.
BUCKETS: dict[str, tuple[str, Callable[[datetime], datetime]]] = {
    "energy_hourly": ("hour", _hour),
    "energy_daily": ("day", _day),
    "energy_monthly": ("month", _month),
}

Key = tuple[str, str, str, datetime]


def readings() -> list[list[Reading]]:
    """Three devices every 15 minutes from 22:30 to 01:15, across March's end, with a
    redelivered batch and a duplicate inside a batch; some readings lack power or energy."""
    batches: list[list[Reading]] = []
    for step in range(12):
        at = T0 + timedelta(minutes=15 * step)
        batch = [
            Reading("t", "m-1", "smart_meter", at, 0.25 + step / 100, 1.5),
            Reading("t", "m-2", "smart_meter", at, 0.5, None if step % 3 else 2.0),
            Reading("t", "pv-1", "solar_panel", at, None if step % 4 == 0 else 0.75, 3.0),
        ]
        batches.append([*batch, batch[0]])
    batches.append(batches[5])
    return batches


def write(database: Database, batches: list[list[Reading]]) -> None:
    store_batches(database.url, batches)


def recomputed(database: Database) -> dict[Key, tuple[float, int]]:
    """(energy, readings) per rollup row, summed here from the raw readings."""
    energy: dict[Key, float] = defaultdict(float)
    count: dict[Key, int] = defaultdict(int)
    rows = database.query(
        "SELECT device_id, data_type, recorded_at, energy_amount FROM energy_data"
    )
    for device, data_type, at, kwh in rows:
        for table, (_, bucket_of) in BUCKETS.items():
            key = (table, device, data_type, bucket_of(as_utc(at)))
            energy[key] += kwh or 0.0
            count[key] += 1
    return {key: (round(total, 9), count[key]) for key, total in energy.items()}


def stored(database: Database) -> dict[Key, tuple[float, int]]:
    found = {}
    for table, (bucket, _) in BUCKETS.items():
        rows = database.query(
            f"SELECT device_id, data_type, {bucket}, energy_kwh, readings FROM {table}"
        )
        for device, data_type, at, energy, count in rows:
            found[(table, device, data_type, as_utc(at))] = (round(energy, 9), count)
    return found


def test_the_rollups_the_writer_keeps_equal_their_readings_and_verify_says_so(
    database: Database,
) -> None:
    """Every rollup row equals the sum of its readings, duplicates and redeliveries
    counted once; `db verify` agrees, month by month, and exits 0."""
    write(database, readings())
    assert stored(database) == recomputed(database)
    assert len(stored(database)) == 3 * 4 + 3 * 2 + 3 * 2  # hours, days, months per device
    done = meterflow("db", "verify", "--db", database.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "2026-03: rollups match the readings",
        "2026-04: rollups match the readings",
        "cost and carbon match the rates",
    ]


def test_verify_names_every_row_that_differs_and_rebuild_makes_them_equal_again(
    database: Database,
) -> None:
    """A changed, a missing and an invented rollup row are each named, exit 1; rebuilding
    the rollups from the readings makes them equal to the readings again."""
    write(database, readings())
    database.execute("UPDATE energy_hourly SET energy_kwh = energy_kwh + 1 WHERE device_id = 'm-1'")
    database.execute("DELETE FROM energy_daily WHERE device_id = 'm-2'")
    database.execute(
        "INSERT INTO energy_monthly (device_id, data_type, month, energy_kwh, power_max, "
        "power_sum, power_count, readings) SELECT 'ghost', data_type, month, energy_kwh, "
        "power_max, power_sum, power_count, readings FROM energy_monthly WHERE device_id = 'm-1'"
    )
    done = meterflow("db", "verify", "--db", database.url)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "2026-03: 4 rollup rows differ from the readings" in lines
    assert "2026-04: 4 rollup rows differ from the readings" in lines
    changed = [line for line in lines if line.startswith("  energy_hourly m-1 consumption")]
    missing = [line for line in lines if line.startswith("  energy_daily m-2 consumption")]
    invented = [line for line in lines if line.startswith("  energy_monthly ghost consumption")]
    assert (len(changed), len(missing), len(invented)) == (4, 2, 2)
    assert all("stored nothing" in line for line in missing)
    assert all("readings give nothing" in line for line in invented)
    assert "8 rollup rows differ from the readings" in done.stderr
    assert "meterflow db rebuild-rollups" in done.stderr
    rebuilt = meterflow("db", "rebuild-rollups", "--db", database.url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert stored(database) == recomputed(database)
    assert meterflow("db", "verify", "--db", database.url).returncode == 0


def test_an_archived_month_keeps_its_rollups_and_is_checked_against_its_archive(
    database: Database, tmp_path: Path
) -> None:
    """Retention takes a month's readings away, not its totals. `db verify` checks the
    month's rollup rows against its archive file where the database can read it (SQLite)
    and names any that differ; where it cannot (PostgreSQL's CSV), it says so."""
    write(database, readings())
    before = stored(database)
    archive = ("partitions", "archive", "2026-03", "--to", str(tmp_path), "--db", database.url)
    archived = meterflow(*archive)
    assert archived.returncode == 0, archived.stderr
    assert stored(database) == before
    verify = ("db", "verify", "--archive-dir", str(tmp_path), "--db", database.url)
    done = meterflow(*verify)
    assert done.returncode == 0, done.stderr
    if database.kind == "postgres":
        assert done.stdout.splitlines() == [
            "2026-04: rollups match the readings",
            "2026-03: no readings to read (dropped, or archived where this database cannot "
            "query it); rollup rows kept, not checked",
            "cost and carbon match the rates",
        ]
        return
    assert done.stdout.splitlines() == [
        "2026-04: rollups match the readings",
        "2026-03 (archived in energy_data_2026_03.db): rollups match the readings",
        "cost and carbon match the rates",
    ]
    database.execute("UPDATE energy_daily SET readings = readings + 1 WHERE device_id = 'm-2'")
    wrong = meterflow(*verify)
    assert wrong.returncode == 1
    lines = wrong.stdout.splitlines()
    assert (
        "2026-03 (archived in energy_data_2026_03.db): 1 rollup rows differ from the readings"
        in lines
    )
    assert any(line.startswith("  energy_daily m-2 consumption 2026-03-31") for line in lines)


def _as_written_before_version_6(archive: Path) -> None:
    """Take `interval_start` (and v10's `state_of_charge`, v13's `cost` and
    `carbon_footprint`) out of an archive file, as meterflow wrote them before v6."""
    later = ("interval_start", "state_of_charge", "cost", "carbon_footprint")
    if archive.name.endswith(".csv.gz"):
        with gzip.open(archive, "rt", newline="") as source:
            rows = list(csv.reader(source))
        assert rows[0][-len(later) :] == list(later)
        with gzip.open(archive, "wt", newline="") as target:
            csv.writer(target).writerows(row[: -len(later)] for row in rows)
        return
    with contextlib.closing(sqlite3.connect(archive)) as conn:
        for column in later:
            conn.execute(f"ALTER TABLE energy_data_2026_03 DROP COLUMN {column}")
        conn.commit()


def test_a_month_archived_before_version_6_is_checked_queried_and_restored(
    database: Database, tmp_path: Path
) -> None:
    """An archive without interval_start: its readings count where they were recorded,
    `query sql --include-archive` reads it (SQLite), and restore brings it back whole."""
    write(database, readings())
    before = stored(database)
    archive = ("partitions", "archive", "2026-03", "--to", str(tmp_path), "--db", database.url)
    assert meterflow(*archive).returncode == 0
    [path] = tmp_path.glob("energy_data_2026_03.*")
    _as_written_before_version_6(path)
    if database.kind == "sqlite":
        verify = ("db", "verify", "--archive-dir", str(tmp_path), "--db", database.url)
        done = meterflow(*verify)
        assert done.returncode == 0, done.stdout + done.stderr
        count = "SELECT count(*) AS n, count(interval_start) AS spans FROM energy_data"
        query = ("query", "sql", count, "--include-archive", "--archive-dir", str(tmp_path))
        queried = meterflow(*query, "--format", "csv", "--db", database.url)
        assert queried.stdout.splitlines() == ["n,spans", "36,0"], queried.stderr
    restored = meterflow("partitions", "restore", str(path), "--db", database.url)
    assert restored.returncode == 0, restored.stderr
    assert stored(database) == before
    assert meterflow("db", "verify", "--db", database.url).returncode == 0
