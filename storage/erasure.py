"""Erasing a person's data everywhere it lives: the readings while theirs (live and in the
archived month files), the rollups they made up, counters, registry and ownership rows,
dead letters from their devices' topics, and their id in the audit trail.

SQLite deletes with `secure_delete` on, so freed cells and pages are zeroed, then
checkpoints the WAL (TRUNCATE) and VACUUMs, so no copy stays in the file, its WAL or its
free pages; an archived month file is edited and vacuumed the same way, a PostgreSQL
archive rewritten without the rows. PostgreSQL deletes, then VACUUMs what it touched
(`vacuum`). The rollups of live months are rebuilt from the readings that remain, so what
was someone else's in a shared bucket stays; in archived months the erased device's rows
go.

Backups cannot be edited: each erasure is appended to a log outside the database (which
ids, when; `ErasureLog`), and a restore applies the log again (`meterflow restore`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, and_, delete, false, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME
from partitions.postgres_store import ARCHIVE_SUFFIX as POSTGRES_ARCHIVE_SUFFIX
from partitions.sqlite_store import ARCHIVE_SUFFIX as SQLITE_ARCHIVE_SUFFIX
from partitions.store import archived_months
from storage import cipher
from storage.backend import Dialect
from storage.engine import open_engine
from storage.owners import Ownership
from storage.privacy import Person, letters_of, spans_of
from storage.rollups import ROLLUPS
from storage.tables import (
    audit_log,
    dead_letters,
    device_owners,
    iot_devices,
    metadata,
    meter_counters,
)
from storage.verify import rebuild_month

ERASED = "(erased)"


@dataclass(slots=True)
class Erased:
    """How many rows an erasure removed (or, dry, would remove), by table."""

    rows: dict[str, int] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)

    def add(self, table: str, count: int) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count


async def erase(conn: AsyncConnection, backend: Dialect, person: Person) -> Erased:
    """Remove `person`'s rows from the live database, in the caller's transaction (which
    a dry run rolls back)."""
    spans = await spans_of(conn, person)
    erased = Erased(devices=sorted({span.device_id for span in spans}))
    touched = []
    for month in sorted(backend.partitions.months):
        table = backend.readings_table(month)
        column = table.c.user_id if person.kind == "user" else table.c.device_id
        within = and_(table.c.recorded_at >= month.start, table.c.recorded_at < month.end)
        done = await conn.execute(delete(table).where(column == person.id, within))
        if done.rowcount:
            erased.add("energy_data", done.rowcount)
            touched.append(month)
    live = set(backend.partitions.months)
    for month in touched:
        await rebuild_month(conn, backend, month)
    for rollup in ROLLUPS:
        table = metadata.tables[rollup.table]
        bucket = table.c[rollup.bucket]
        outside_live = and_(true(), *(or_(bucket < m.start, bucket >= m.end) for m in live))
        held = _held(table.c.device_id, bucket, spans)
        done = await conn.execute(delete(table).where(held, outside_live))
        erased.add(rollup.table, done.rowcount)
    await _registry(conn, person, erased)
    gone = await conn.execute(delete(dead_letters).where(letters_of(spans)))
    erased.add("dead_letters", gone.rowcount)
    names = {person.id, *erased.devices}
    named = or_(false(), *(audit_log.c.target.contains(n, autoescape=True) for n in names))
    done = await conn.execute(update(audit_log).where(named).values(target=ERASED))
    erased.add("audit_log", done.rowcount)
    return erased


def _held(
    device: ColumnElement[str], bucket: ColumnElement[datetime], spans: Sequence[Ownership]
) -> ColumnElement[bool]:
    return or_(
        false(), *(and_(device == s.device_id, bucket >= s.since, bucket < s.until) for s in spans)
    )


async def _registry(conn: AsyncConnection, person: Person, erased: Erased) -> None:
    """Counters, registry and ownership rows: a device's all; a user's devices' while
    theirs (their ownership spans stay, owned by nobody, so no one else inherits them)."""
    if person.kind == "device":
        for table in (meter_counters, device_owners, iot_devices):
            done = await conn.execute(delete(table).where(table.c.device_id == person.id))
            erased.add(table.name, done.rowcount)
        return
    theirs = select(iot_devices.c.device_id).where(iot_devices.c.user_id == person.id)
    current = list((await conn.execute(theirs)).scalars())
    for table in (meter_counters, iot_devices):
        done = await conn.execute(delete(table).where(table.c.device_id.in_(current)))
        erased.add(table.name, done.rowcount)
    done = await conn.execute(
        update(device_owners).where(device_owners.c.user_id == person.id).values(user_id=None)
    )
    erased.add(device_owners.name, done.rowcount)


def erase_archives(
    archive_dir: Path, person: Person, *, key: str | None, dry_run: bool = False
) -> dict[Path, int]:
    """Remove `person`'s readings from every archived month file under `archive_dir`
    (SQLite's encrypted with `key`, if any)."""
    column = "user_id" if person.kind == "user" else "device_id"
    found: dict[Path, int] = {}
    for month, path in archived_months(archive_dir, SQLITE_ARCHIVE_SUFFIX):
        with closing(cipher.connect(path, key, isolation_level=None)) as db:
            [(count,)] = db.execute(
                f'SELECT count(*) FROM "{month.table_name}" WHERE {column} = ?', (person.id,)
            ).fetchall()
            if count and not dry_run:
                db.execute("PRAGMA secure_delete = ON")
                db.execute(f'DELETE FROM "{month.table_name}" WHERE {column} = ?', (person.id,))
                db.execute("VACUUM")
            if count:
                found[path] = count
    for _, path in archived_months(archive_dir, POSTGRES_ARCHIVE_SUFFIX):
        count = _rewrite_csv(path, column, person.id, dry_run=dry_run)
        if count:
            found[path] = count
    return found


def _rewrite_csv(path: Path, column: str, value: str, *, dry_run: bool) -> int:
    with gzip.open(path, "rt", newline="") as text:
        rows = list(csv.reader(text))
    header, body = rows[0], rows[1:]
    at = header.index(column)
    kept = [row for row in body if row[at] != value]
    if dry_run or len(kept) == len(body):
        return len(body) - len(kept)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as raw:
        with (
            gzip.GzipFile(fileobj=raw, mode="wb") as out,
            io.TextIOWrapper(out, encoding="utf-8", newline="") as lines,
        ):
            csv.writer(lines).writerows([header, *kept])
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(path)
    return len(body) - len(kept)


def sqlite_scrub(path: Path, key: str | None) -> None:
    """After an erasure committed: no old copy in the WAL, the free pages or the file's
    slack (secure_delete zeroed what the deletes freed; VACUUM rewrites the rest)."""
    with closing(cipher.connect(path, key, isolation_level=None, timeout=60)) as db:
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def postgres_vacuum(url: str) -> None:
    """After an erasure committed: VACUUM the readings and the tables it deleted from, so
    their dead rows' space is reclaimed (outside a transaction, as VACUUM must be)."""
    engine = open_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for table in (BASE_NAME, *(r.table for r in ROLLUPS), meter_counters.name,
                          device_owners.name, iot_devices.name, dead_letters.name,
                          audit_log.name):  # fmt: skip
                await conn.exec_driver_sql(f"VACUUM {table}")
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class Erasure:
    """One line of the erasure log: who was erased and when, never what."""

    at: datetime
    person: Person

    def line(self) -> str:
        return json.dumps({"at": self.at.isoformat(), "kind": self.person.kind,
                           "id": self.person.id}) + "\n"  # fmt: skip


class ErasureLog:
    """The erasures so far, appended to a file beside the data, not in the database, so
    that restoring a backup can apply them again."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, erasure: Erasure) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as out:
            out.write(erasure.line())
            out.flush()
            os.fsync(out.fileno())

    def __iter__(self) -> Iterator[Erasure]:
        if not self.path.exists():
            return
        for line in self.path.read_text().splitlines():
            found = json.loads(line)
            yield Erasure(datetime.fromisoformat(found["at"]), Person(found["kind"], found["id"]))
