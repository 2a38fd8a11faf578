"""The SQLite backend: a batch's readings of a month go in as bound multi-row VALUES, and
a plain batch's whole transaction is one trip to aiosqlite's thread.

aiosqlite runs statements in its own thread. With `executemany`, the sqlite3 module takes
the GIL back for every row, and while the event loop thread is busy receiving, each of
those hand-offs can wait a full switch interval: a 5,000-row batch then took seconds to
commit. One statement binding a thousand rows at once takes the GIL back once for them,
and every per-row step runs inside SQLite, without the GIL. Running a batch's statements
as one function in that thread (`_in_thread`) keeps the hand-offs to one per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import operator
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, cast

import aiosqlite
import msgspec
from sqlalchemy import Table, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import (
    VIEW_NAME,
    Month,
    SQLitePartitionStore,
    UnionViewPartitions,
    missing_columns,
)
from storage import cipher
from storage.backend import PlainBatch, Rows
from storage.backup import backup_sqlite, restore_sqlite
from storage.devices import DeviceSighting, registry_update
from storage.engine import SQLiteOptions, sqlite_file
from storage.faults import crash_point
from storage.readonly import query_sqlite
from storage.records import ROW_COLUMNS, Reading, Row, by_month, optional_width, reading_rows
from storage.rollups import (
    PIECE_COLUMNS,
    READINGS_IN_WINDOW,
    ROLLUPS,
    Rollup,
    sqlite_delta,
    sqlite_insert_sql,
)
from storage.sqlite_rollups import (
    CLEAR_DELTA,
    CREATE_DELTA,
    FILL_HOURLY_DELTA,
    PRICE_DELTA,
    delta_sql,
    reading_costs_sql,
    rollup_sql,
)
from storage.tables import DEVICE_TYPE_CHECK, ROLLUP_MEASURES, energy_partition, metadata
from storage.verify import Difference, compare_sql, difference, month_source


def _utc(text: str) -> datetime:
    """The instant a time stored by UTCDateTime (UTC text without an offset) stands for."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sqlite_timestamp(moment: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME reads back: UTC, microseconds, no offset."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    # isoformat is several times cheaper than strftime, and this runs for every reading.
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _unpack(columns: Sequence[str]) -> str:
    return ", ".join(f"value ->> {index}" for index in range(len(columns)))


_JSON = msgspec.json.Encoder()


class Stamps(dict[datetime, str]):
    """Each distinct time's SQLite text, formatted once per batch: a fleet reporting on the
    minute shares its times, and every device's last_seen is one of its readings' times."""

    def __missing__(self, moment: datetime) -> str:
        text = self[moment] = sqlite_timestamp(moment)
        return text


_UNIQUE_KEY = ("device_id", "data_type", "recorded_at")
# The registry's row in the schema, and its check of device types in any version's words.
_REGISTRY = "type = 'table' AND name = 'iot_devices'"
_DEVICE_TYPE_CHECK = re.compile(r"device_type IN \([^)]*\)")
_ROW_KEY = operator.itemgetter(*(ROW_COLUMNS.index(column) for column in _UNIQUE_KEY))


def batch_rows(readings: Sequence[Reading], stamps: Stamps | None = None) -> list[Row]:
    """The readings' rows (`storage.records.reading_rows`) with SQLite's text times,
    sorted by unique key, so that the unique index is walked in order (stably: the first
    of two equal keys stays first, and is the one stored)."""
    rows = reading_rows(
        readings, Stamps() if stamps is None else stamps, optional=optional_width(readings)
    )
    rows.sort(key=_ROW_KEY)
    return rows


# Preparing a statement of many VALUES rows costs SQLite twice what running it does (4
# against 2 us a row; docs/performance.md), so each statement text must come back from
# the sqlite3 module's cache: a batch is cut into chunks of a few sizes only.
CHUNK_ROWS = 1024
# The cache knows a statement by its text, which names the partition. The batch's main
# month is where the next batch goes too; a statement for any other month is likely
# prepared for this batch alone (a utility's export spans some 35 months a batch, a late
# reading one more), so those months' rows go in smaller chunks, cheaper to prepare.
OTHER_MONTH_CHUNK_ROWS = 64


def chunks(rows: Sequence[Row], largest: int = CHUNK_ROWS) -> Iterator[Sequence[Row]]:
    """`rows` in order, in pieces of `largest` rows (a power of two), then of ever smaller
    powers of two."""
    start, size = 0, largest
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start : start + size]
        start += size


Parameters = Mapping[str, object] | Sequence[object]


def _execute(db: sqlite3.Connection, sql: str, parameters: Parameters = ()) -> sqlite3.Cursor:
    """Execute one statement in aiosqlite's thread, raising SQLAlchemy's errors, as its
    adapter would: the writer's retry logic sees no difference."""
    try:
        return db.execute(sql, parameters)
    except cipher.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, cipher.error_base(exc)) from exc


class Statement(NamedTuple):
    """A step of a batch that stores no reading."""

    sql: str
    parameters: Parameters = ()

    def __call__(self, db: sqlite3.Connection) -> int:
        _execute(db, self.sql, self.parameters)
        return 0


# The row's columns a reading may leave empty, and that are then NULL in the table.
_MAY_BE_EMPTY = frozenset(
    column.name
    for column in energy_partition("energy_data_template").columns
    if column.nullable and column.server_default is None
)


def filled_columns(rows: Sequence[Row]) -> tuple[int, ...]:
    """The positions of the rows' columns to bind: all but those no row fills.

    The sqlite3 module binds a None ten times slower than a number (it looks for an
    adapter of NoneType first, and fails): a smart meter's row has six, which cost more
    than the rest of it (docs/performance.md).
    """
    # The first row settles most columns; only those it leaves empty are looked through.
    return tuple(
        index
        for index, value in enumerate(rows[0])
        if value is not None
        or ROW_COLUMNS[index] not in _MAY_BE_EMPTY
        or list(map(operator.itemgetter(index), rows)).count(None) < len(rows)
    )


class PartitionInsert(NamedTuple):
    """The step storing a batch's readings of one month and adding them to the rollups."""

    table: str
    rows: Sequence[Row]
    created_at: str
    priced: bool
    chunk_rows: int = CHUNK_ROWS

    def __call__(self, db: sqlite3.Connection) -> int:
        [(mark,)] = _execute(db, f'SELECT coalesce(max(id), 0) FROM "{self.table}"')
        filled = filled_columns(self.rows)
        columns = tuple(ROW_COLUMNS[index] for index in filled)
        bound = operator.itemgetter(*filled)
        inserted = 0
        for chunk in chunks(self.rows, self.chunk_rows):
            insert = sqlite_insert_sql(self.table, len(chunk), columns)
            parameters = [self.created_at, *itertools.chain.from_iterable(map(bound, chunk))]
            inserted += _execute(db, insert, parameters).rowcount
        if inserted:
            for sql in (*CREATE_DELTA, *CLEAR_DELTA):
                _execute(db, sql)
            _execute(db, delta_sql(self.table), {"mark": mark})
            if self.priced:
                _execute(db, PRICE_DELTA)
                _execute(db, reading_costs_sql(self.table), {"mark": mark})
            _execute(db, FILL_HOURLY_DELTA)
            for rollup in ROLLUPS:
                _execute(db, rollup_sql(rollup))
        return inserted


Step = Statement | PartitionInsert


# Every hand-off to aiosqlite's thread waits for the other side to be scheduled, and the
# event loop is busy receiving: SQLAlchemy's adapter makes three or four per statement
# (cursor, execute, fetch, close), BEGIN and COMMIT included. The hot path instead hands
# the thread a batch's steps at once, and a batch of plain readings its whole
# transaction, BEGIN to COMMIT: one trip.
async def _in_thread(
    conn: AsyncConnection,
    work: Callable[[sqlite3.Connection, Sequence[Step]], int],
    steps: Sequence[Step],
) -> int:
    """Run `work` in aiosqlite's thread, in turn with the connection's other statements."""
    return await _queue(await _driver(conn), work, steps)


async def _queue(
    driver: aiosqlite.Connection,
    work: Callable[[sqlite3.Connection, Sequence[Step]], int],
    steps: Sequence[Step],
) -> int:
    # aiosqlite has no public way to run a function in its thread; `_execute` is the
    # queue every one of its own methods goes through.
    queue = driver._execute  # noqa: SLF001
    db = driver._conn  # noqa: SLF001
    return cast("int", await queue(work, db, steps))  # type: ignore[no-untyped-call]


def _run(db: sqlite3.Connection, steps: Sequence[Step]) -> int:
    """Run steps in order; the readings they newly stored."""
    return sum(step(db) for step in steps)


def _commit(db: sqlite3.Connection, steps: Sequence[Step]) -> int:
    """Run steps as one transaction of their own; the readings they newly stored."""
    # IMMEDIATE, as the engine's transactions: wait for the write lock at BEGIN.
    _execute(db, "BEGIN IMMEDIATE")
    try:
        new = _run(db, steps)
        crash_point("during-commit")
        _execute(db, "COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return new


async def _fetch_all(
    conn: AsyncConnection, sql: str, parameters: Parameters = ()
) -> Iterable[sqlite3.Row]:
    """Run one query of the hot path; its rows, in the same trip."""
    driver = await _driver(conn)
    try:
        return await driver.execute_fetchall(sql, parameters)
    except cipher.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, cipher.error_base(exc)) from exc


async def _driver(conn: AsyncConnection) -> aiosqlite.Connection:
    raw = await conn.get_raw_connection()
    return cast("aiosqlite.Connection", raw.driver_connection)


_DEVICE_COLUMNS = ("device_id", "device_type", "last_seen", "battery_level", "battery_updated_at")


_UPSERT_DEVICES = f"""
INSERT INTO iot_devices ({", ".join(_DEVICE_COLUMNS)}, status, created_at, updated_at)
SELECT {_unpack(_DEVICE_COLUMNS)}, 'active', :now, :now FROM json_each(:rows) WHERE true
{registry_update("max(coalesce(iot_devices.last_seen, excluded.last_seen), excluded.last_seen)")}
"""


class SQLiteBackend:
    """Monthly tables under a UNION ALL view; readings go in as bound VALUES, registry
    rows as one JSON text that json_each unpacks (one row per device, not per reading)."""

    def __init__(self, *, priced: bool = False) -> None:
        self._partitions = UnionViewPartitions(energy_partition)
        self._priced = priced

    @property
    def partitions(self) -> UnionViewPartitions:
        return self._partitions

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """Nothing to do: every transaction here begins IMMEDIATE, holding the write lock."""

    async def create_tables(self, conn: AsyncConnection) -> None:
        await conn.run_sync(metadata.create_all)

    async def relax_measures(self, conn: AsyncConnection) -> None:
        """SQLite cannot drop NOT NULL: each old partition is rebuilt in the new shape."""
        await self._partitions.load(conn)
        for month in sorted(self._partitions.months):
            name = month.table_name
            info = await conn.exec_driver_sql(f"PRAGMA table_info({name})")
            if not any(row[1] == "energy_amount" and row[3] for row in info):
                continue
            await conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO {name}_v1")
            await conn.run_sync(energy_partition(name).create)
            await conn.exec_driver_sql(f"INSERT INTO {name} SELECT * FROM {name}_v1")
            await conn.exec_driver_sql(f"DROP TABLE {name}_v1")
        # Renaming rewrote the view to name the old tables: build it afresh.
        await self._partitions.rebuild_view(conn)

    async def widen_device_types(self, conn: AsyncConnection) -> None:
        """SQLite cannot alter a constraint: the check's text in the schema is rewritten, the
        way SQLite's documentation gives for one made less strict (ALTER TABLE, section 7),
        without rebuilding the table the partitions' foreign keys point at."""
        sql = await conn.scalar(text(f"SELECT sql FROM sqlite_master WHERE {_REGISTRY}"))
        widened = _DEVICE_TYPE_CHECK.sub(DEVICE_TYPE_CHECK, sql)
        if widened == sql:
            return
        version = await conn.scalar(text("PRAGMA schema_version"))
        await conn.exec_driver_sql("PRAGMA writable_schema = ON")
        await conn.execute(
            text(f"UPDATE sqlite_master SET sql = :sql WHERE {_REGISTRY}"),
            {"sql": widened},
        )
        await conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
        await conn.exec_driver_sql("PRAGMA writable_schema = RESET")

    async def prepare(self, conn: AsyncConnection) -> None:
        await self._partitions.load(conn)
        views = await conn.run_sync(lambda sync: inspect(sync).get_view_names())
        if VIEW_NAME not in views:
            await self._partitions.rebuild_view(conn)

    async def lean_writes(self, conn: AsyncConnection) -> None:
        """Nothing to do: SQLite checks the readings' foreign key with one index probe, and
        its rollups keep the covering index (storage/tables.py)."""

    async def cover_rollups(self, conn: AsyncConnection) -> None:
        """Each rollup's bucket index rebuilt with every measure in it (the measures it has:
        v8 had no cost and carbon yet)."""
        for rollup in ROLLUPS:
            index = f"ix_{rollup.table}_{rollup.bucket}"
            info = await conn.exec_driver_sql(f"PRAGMA table_info({rollup.table})")
            present = {row[1] for row in info}
            measures = [measure for measure in ROLLUP_MEASURES if measure in present]
            columns = ", ".join((rollup.bucket, "device_id", "data_type", *measures))
            await conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
            await conn.exec_driver_sql(f"CREATE INDEX {index} ON {rollup.table} ({columns})")

    async def add_reading_columns(self, conn: AsyncConnection) -> None:
        """Each month's table in turn; the view is built afresh over the new shape."""
        await self._partitions.load(conn)
        template = energy_partition("energy_data_template")
        for month in sorted(self._partitions.months):
            table = month.table_name
            info = await conn.exec_driver_sql(f'PRAGMA table_info("{table}")')
            present = {row[1] for row in info}
            for column in template.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=conn.dialect)
                    await conn.exec_driver_sql(
                        f'ALTER TABLE "{table}" ADD COLUMN "{column.name}" {kind}'
                    )
        await self._partitions.rebuild_view(conn)

    def rollup_bucket(self, rollup: Rollup, column: str) -> str:
        return rollup.sqlite_bucket(column)

    def rollup_delta(self, source: str, where: str = "") -> str:
        return sqlite_delta(source, where)

    async def readings_in_window(
        self, conn: AsyncConnection, start: datetime
    ) -> list[tuple[str, str]]:
        # A reading's energy reaches back from it, never forward: later months may hold
        # some, earlier ones none.
        await self._partitions.load(conn)
        return [
            (f'"{month.table_name}"', sqlite_delta(f'"{month.table_name}"', READINGS_IN_WINDOW))
            for month in sorted(self._partitions.months)
            if month.end > start
        ]

    def local_date(self, column: str, offset_s: str) -> str:
        return f"date({column}, {offset_s} || ' seconds')"

    def shifted_text(self, column: str, offset_minutes: int, length: int) -> str:
        return f"substr(datetime({column}, '{offset_minutes:+d} minutes'), 1, {length})"

    def readings_table(self, month: Month) -> Table:
        # The month's own table: the view would probe every month.
        return energy_partition(month.table_name)

    async def lock_rollups(self, conn: AsyncConnection) -> None:
        """Nothing to do: every transaction here begins IMMEDIATE, holding the write lock."""

    async def stray_rows(self, conn: AsyncConnection) -> int:
        """Always 0: every SQLite reading is in its month's own table."""
        return 0

    async def move_stray_rows(self, conn: AsyncConnection) -> dict[Month, int]:
        return {}

    def partition_store(
        self, engine: AsyncEngine, url: str, options: SQLiteOptions | None = None
    ) -> SQLitePartitionStore:
        return SQLitePartitionStore(
            sqlite_file(url, "partition maintenance"),
            energy_partition("energy_data_template"),
            cipher.Files((options or SQLiteOptions()).key),
            (options or SQLiteOptions()).busy_timeout_ms,
        )

    def backup(self, url: str, directory: Path, keep: int, *, key: str | None) -> Path:
        return backup_sqlite(url, directory, key=key, keep=keep)

    def restore(self, backup: Path, url: str, *, force: bool, key: str | None) -> str:
        return f"to {restore_sqlite(backup, url, key=key, force=force)}"

    def read_only_query(
        self, url: str, sql: str, archives: Sequence[Path] | None, *, key: str | None
    ) -> Rows:
        return query_sqlite(url, sql, archives or (), key=key)

    def archived_differences(
        self, url: str, archive: Path, month: Month, *, key: str | None
    ) -> list[Difference]:
        """The archive is attached read-only beside the database, opened read-only too."""
        database = sqlite_file(url, "verifying an archived month")
        conn = cipher.connect(f"file:{database}?mode=ro", key, uri=True)
        window = {"start": sqlite_timestamp(month.start), "end": sqlite_timestamp(month.end)}
        found: list[Difference] = []
        with contextlib.closing(conn):
            cipher.attach(conn, f"file:{archive}?mode=ro", "archive", key)
            table = f'archive."{month.table_name}"'
            missing = missing_columns(conn, "archive", month.table_name, PIECE_COLUMNS.split(", "))
            readings = f"(SELECT *, {', '.join(f'NULL AS {c}' for c in missing)} FROM {table})"
            delta = sqlite_delta(month_source(readings if missing else table))
            for rollup in ROLLUPS:
                sql = compare_sql(rollup, delta, rollup.sqlite_bucket("quarter_hour"))
                found.extend(
                    difference(rollup, (device, data_type, _utc(bucket), *values))
                    for device, data_type, bucket, *values in conn.execute(sql, window)
                )
        return found

    async def registered_owners(
        self, conn: AsyncConnection, device_ids: Sequence[str]
    ) -> dict[str, str | None]:
        # One row of JSON back instead of a row per device: see the module docstring.
        [(found,)] = await _fetch_all(
            conn,
            "SELECT json_group_array(json_array(device_id, user_id)) FROM iot_devices "
            "WHERE device_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(device_ids)),),
        )
        pairs: list[tuple[str, str | None]] = json.loads(found)
        return dict(pairs)

    async def insert_readings(
        self, conn: AsyncConnection, readings: Sequence[Reading], now: datetime
    ) -> int:
        """Owners are looked up by the insert itself (`sqlite_insert_sql`)."""
        return await _in_thread(
            conn, _run, _inserts(by_month(readings), now, Stamps(), priced=self._priced)
        )

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        if seen:
            await _in_thread(conn, _run, [_upsert_statement(seen, now, Stamps())])

    async def store_readings(self, conn: AsyncConnection, batch: PlainBatch) -> asyncio.Future[int]:
        """BEGIN to COMMIT in one trip to aiosqlite's thread: see `_in_thread`."""
        stamps = Stamps()
        steps: list[Step] = [_upsert_statement(batch.seen, batch.now, stamps)] if batch.seen else []
        steps.extend(_inserts(batch.months, batch.now, stamps, priced=self._priced))
        driver = await _driver(conn)
        # A task takes its first step, which puts the work on aiosqlite's queue, in the
        # order tasks were created: transactions queued one after another run in order.
        return asyncio.ensure_future(_queue(driver, _commit, steps))


def _inserts(
    months: Mapping[Month, Sequence[Reading]], now: datetime, stamps: Stamps, *, priced: bool
) -> list[Step]:
    created_at = sqlite_timestamp(now)
    main = max(months, key=lambda month: len(months[month]), default=None)
    return [
        PartitionInsert(
            month.table_name,
            batch_rows(group, stamps),
            created_at,
            priced,
            CHUNK_ROWS if month == main else OTHER_MONTH_CHUNK_ROWS,
        )
        for month, group in months.items()
    ]


def _upsert_statement(seen: Sequence[DeviceSighting], now: datetime, stamps: Stamps) -> Statement:
    rows: list[Row] = [
        (
            s.device_id,
            s.device_type,
            stamps[s.last_seen],
            s.battery_level,
            None if s.battery_updated_at is None else stamps[s.battery_updated_at],
        )
        for s in seen
    ]
    return Statement(_UPSERT_DEVICES, {"rows": _JSON.encode(rows).decode(), "now": stamps[now]})
