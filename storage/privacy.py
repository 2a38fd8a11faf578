"""A person's data wherever meterflow keeps it: a user's (the readings recorded while they
owned a device, their devices' registry rows, counters, rollups while theirs, and the dead
letters from those devices' topics) or one device's, in the live database and in the
archived month files.

`person_rows` yields each table's rows for `privacy export`; the files are written by
`write_export`, owner-only, with a manifest of counts and SHA-256 checksums.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import JSON, Boolean, ColumnElement, Float, Integer, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions.postgres_store import ARCHIVE_SUFFIX as POSTGRES_ARCHIVE_SUFFIX
from partitions.sqlite_store import ARCHIVE_SUFFIX as SQLITE_ARCHIVE_SUFFIX
from partitions.store import archived_months
from storage import cipher
from storage.backend import Dialect
from storage.owners import Ownership, ownerships, whole
from storage.rollups import ALL_TIME, ROLLUPS
from storage.tables import (
    dead_letters,
    device_owners,
    energy_partition,
    iot_devices,
    metadata,
    meter_counters,
)
from storage.types import UTCDateTime

Kind = Literal["user", "device"]
Format = Literal["jsonl", "csv"]
READINGS = "energy_data"


@dataclass(frozen=True, slots=True)
class Person:
    kind: Kind
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(slots=True)
class TableRows:
    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


async def spans_of(conn: AsyncConnection, person: Person) -> list[Ownership]:
    """Where the person's data is: each device and the span it was theirs (a device's:
    all of time)."""
    if person.kind == "device":
        return whole([person.id], *ALL_TIME)
    return await ownerships(conn, person.id, *ALL_TIME)


async def live_rows(
    conn: AsyncConnection, backend: Dialect, person: Person, spans: Sequence[Ownership]
) -> AsyncIterator[TableRows]:
    """Each live table's rows of `person`, readings month by month from the partitions
    `backend` knows."""
    readings: TableRows | None = None
    for month in sorted(backend.partitions.months):
        table = backend.readings_table(month)
        mine = (
            table.c.user_id == person.id
            if person.kind == "user"
            else table.c.device_id == person.id
        )
        query = select(table).where(
            mine, table.c.recorded_at >= month.start, table.c.recorded_at < month.end
        )
        result = await conn.execute(query.order_by(table.c.device_id, table.c.recorded_at))
        if readings is None:
            readings = TableRows(READINGS, list(result.keys()))
        readings.rows += [tuple(row) for row in result]
    if readings is not None:
        yield readings
    for rollup in ROLLUPS:
        table = metadata.tables[rollup.table]
        bucket = table.c[rollup.bucket]
        held = or_(
            false(),
            *(and_(table.c.device_id == s.device_id, bucket >= _floor(s.since, rollup.bucket),
                   bucket < s.until) for s in spans),
        )  # fmt: skip
        yield await _rows(conn, rollup.table, select(table).where(held).order_by(*table.c))
    # A device's registry row and counters are its current owner's: a user's are those of
    # the devices theirs now, not of one they sold.
    current = (
        select(iot_devices.c.device_id).where(iot_devices.c.user_id == person.id)
        if person.kind == "user"
        else select(iot_devices.c.device_id).where(iot_devices.c.device_id == person.id)
    )
    for table in (iot_devices, meter_counters):
        query = select(table).where(table.c.device_id.in_(current))
        yield await _rows(conn, table.name, query.order_by(*table.primary_key.columns))
    owners = select(device_owners).where(
        device_owners.c.user_id == person.id
        if person.kind == "user"
        else device_owners.c.device_id == person.id
    )
    yield await _rows(conn, device_owners.name, owners.order_by(*device_owners.c))
    yield await _rows(
        conn,
        dead_letters.name,
        select(dead_letters).where(letters_of(spans)).order_by(dead_letters.c.id),
    )


def letters_of(spans: Sequence[Ownership]) -> ColumnElement[bool]:
    """The dead letters that came on the spans' devices' topics while the spans held."""
    return or_(
        false(),
        *(
            and_(from_topic_of(s.device_id), dead_letters.c.received_at >= s.since,
                 dead_letters.c.received_at < s.until)
            for s in spans
        ),
    )  # fmt: skip


def from_topic_of(device_id: str) -> ColumnElement[bool]:
    """Whether a dead letter came on a topic of `device_id` (a level of its own, so
    'm-1' is not 'm-10'; `%` and `_` in an id are no wildcards)."""
    return dead_letters.c.topic.contains(f"/{device_id}/", autoescape=True)


def _floor(moment: datetime, bucket: str) -> datetime:
    """The start of the rollup bucket holding `moment`: a bucket that began before a span
    and holds some of it is the person's too."""
    moment = moment.astimezone(UTC)
    if bucket == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


async def _rows(conn: AsyncConnection, name: str, query: Any) -> TableRows:  # noqa: ANN401
    result = await conn.execute(query)
    return TableRows(name, list(result.keys()), [tuple(row) for row in result])


def archived_rows(
    archive_dir: Path, person: Person, key: str | None
) -> Iterator[tuple[Path, TableRows]]:
    """The person's readings in each archived month file under `archive_dir` (SQLite's
    encrypted with `key`, if any)."""
    column = "user_id" if person.kind == "user" else "device_id"
    for month, path in archived_months(archive_dir, SQLITE_ARCHIVE_SUFFIX):
        with closing(cipher.connect(f"file:{path}?mode=ro", key, uri=True)) as conn:
            cursor = conn.execute(
                f'SELECT * FROM "{month.table_name}" WHERE {column} = ? '
                "ORDER BY device_id, recorded_at",
                (person.id,),
            )
            names = [d[0] for d in cursor.description]
            yield path, TableRows(READINGS, names, [_typed(names, r) for r in cursor])
    for _, path in archived_months(archive_dir, POSTGRES_ARCHIVE_SUFFIX):
        with gzip.open(path, "rt", newline="") as text:
            reader = csv.reader(text)
            names = next(reader, [])
            at = names.index(column)
            rows = [_typed(names, r) for r in reader if r[at] == person.id]
            yield path, TableRows(READINGS, names, rows)


_TEMPLATE = energy_partition("energy_data_template")


def _typed(names: Sequence[str], row: Sequence[object]) -> tuple[object, ...]:
    """An archived row's values as the live table's: an archive holds text (a CSV) or
    SQLite's own types (times as text, booleans as 0 and 1)."""
    pairs = zip(names, row, strict=True)
    return tuple(_value(_TEMPLATE.c[name].type, value) for name, value in pairs)


_NUMBERS: dict[type, Callable[[str], object]] = {Float: float, Integer: int}


def _value(kind: object, value: object) -> object:
    if value is None or value == "":
        return None
    if isinstance(kind, UTCDateTime):
        moment = datetime.fromisoformat(str(value))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    number = next((make for cls, make in _NUMBERS.items() if isinstance(kind, cls)), None)
    if number is not None:
        return number(cast("str", value))
    if isinstance(kind, Boolean):
        return value in {1, "1", "t", "true"}
    if isinstance(kind, JSON) and isinstance(value, str):
        return json.loads(value)
    return value


@dataclass(frozen=True, slots=True)
class ExportedFile:
    name: str
    rows: int
    sha256: str


def write_export(
    directory: Path, person: Person, tables: Iterable[TableRows], export_format: Format
) -> list[ExportedFile]:
    """Write each table's rows as `<table>.jsonl` or `.csv` in `directory` (made owner-only,
    and refused unless new or empty), then `manifest.json`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: give a new directory")
    written = []
    for table in tables:
        name = f"{table.name}.{export_format}"
        body = _jsonl(table) if export_format == "jsonl" else _csv(table)
        _private(directory / name, body)
        written.append(ExportedFile(name, len(table.rows), hashlib.sha256(body).hexdigest()))
    manifest = {
        "person": {"kind": person.kind, "id": person.id},
        "made_at": datetime.now(UTC).isoformat(),
        "files": {f.name: {"rows": f.rows, "sha256": f.sha256} for f in written},
    }
    _private(directory / "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    return written


def _private(path: Path, body: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(body)


def _plain(value: object) -> object:
    """A value as JSON and CSV carry it: times in ISO 8601, bytes in base64."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _jsonl(table: TableRows) -> bytes:
    lines = (
        json.dumps(dict(zip(table.columns, map(_plain, row), strict=True)), default=str)
        for row in table.rows
    )
    return "".join(f"{line}\n" for line in lines).encode()


def _csv(table: TableRows) -> bytes:
    class _Lines(list[str]):
        def write(self, text: str) -> None:
            self.append(text)

    out = _Lines()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    writer.writerows(
        [json.dumps(v) if isinstance(v, dict | list) else _plain(v) for v in row]
        for row in table.rows
    )
    return "".join(out).encode()


def merged(live: Sequence[TableRows], archived: Sequence[TableRows]) -> list[TableRows]:
    """The live tables, the archived months' readings added to the live readings' (by
    column name: an archive of an older shape lacks the newer columns)."""
    tables = list(live)
    readings = next((t for t in tables if t.name == READINGS), None)
    for part in archived:
        if readings is None:
            readings = TableRows(READINGS, part.columns)
            tables.insert(0, readings)
        index = {name: i for i, name in enumerate(part.columns)}
        readings.rows += [
            tuple(row[index[name]] if name in index else None for name in readings.columns)
            for row in part.rows
        ]
    return tables
