"""The SQLite backend: a whole batch in one statement per partition, passed as one JSON text.

aiosqlite runs statements in its own thread. With `executemany`, the sqlite3 module takes
the GIL back for every row, and while the event loop thread is busy receiving, each of
those hand-offs can wait a full switch interval (5 ms): a 5,000-row batch then took
seconds to commit. Handing SQLite the batch as one JSON array and letting `json_each`
unpack it keeps every per-row step inside SQLite, which runs without the GIL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import cast

import aiosqlite
import msgspec
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import VIEW_NAME, Month, UnionViewPartitions
from storage.devices import DeviceSighting, registry_update
from storage.records import Reading
from storage.rollups import (
    ROLLUPS,
    SQLITE_NEW,
    sqlite_insert_new_sql,
    sqlite_new_readings_sql,
    sqlite_rollup_sql,
)
from storage.tables import energy_partition, metadata


def sqlite_timestamp(moment: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME reads back: UTC, microseconds, no offset."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    # isoformat is several times cheaper than strftime, and this runs for every reading.
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _unpack(columns: Sequence[str]) -> str:
    return ", ".join(f"value ->> {index}" for index in range(len(columns)))


_ROWS = msgspec.json.Encoder()


def batch_rows(readings: Sequence[Reading], owners: dict[str, str | None]) -> str:
    """The readings as one JSON array of rows in READING_COLUMNS order.

    The hot half of the writer's work on the event loop: msgspec encodes in C, metadata
    goes in as a JSON object (`->>` gives SQLite its text), and each distinct time is
    formatted once per batch, since a fleet reporting on the minute shares them.
    """
    stamps: dict[datetime, str] = {}
    rows = []
    for r in readings:
        at = r.recorded_at
        stamp = stamps.get(at)
        if stamp is None:
            stamp = stamps[at] = sqlite_timestamp(at)
        rows.append(
            (
                owners.get(r.device_id),
                r.device_id,
                r.data_type,
                r.energy_kwh,
                r.power_kw,
                r.voltage,
                r.current,
                r.battery_pct,
                r.irradiance_wm2,
                r.panel_temp_c,
                stamp,
                r.quality,
                r.metadata,
            )
        )
    # Text, not bytes: SQLite reads a BLOB argument of json_each as binary JSONB.
    return _ROWS.encode(rows).decode()


Parameters = Mapping[str, object] | Sequence[object]


# SQLAlchemy's aiosqlite adapter makes three or four trips to aiosqlite's thread per
# statement (cursor, execute, fetch, close), and each waits for the busy event loop to
# notice it came back. The hot path's statements go straight to aiosqlite instead, inside
# the same transaction: one trip each. Errors are turned into SQLAlchemy's, as the adapter
# would, so the writer's retry logic sees no difference.
async def _execute(conn: AsyncConnection, sql: str, parameters: Parameters = ()) -> int:
    """Run one statement of the hot path; its rowcount."""
    [count] = await _execute_in_turn(conn, [(sql, parameters)])
    return count


async def _execute_in_turn(
    conn: AsyncConnection, statements: Sequence[tuple[str, Parameters]]
) -> list[int]:
    """Run statements in order as one trip: all are queued to aiosqlite's thread at once.

    The thread runs them back to back; the event loop wakes once for all of them. After a
    failure the rest still run, harmlessly: the writer then rolls the transaction back.
    """
    driver = await _driver(conn)
    # Each task queues its statement on its first step, so all are queued, in this
    # order, before any result can come back.
    outcomes = await asyncio.gather(
        *(driver.execute(sql, parameters) for sql, parameters in statements),
        return_exceptions=True,
    )
    counts = []
    for (sql, parameters), outcome in zip(statements, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            with _sqlalchemy_errors(sql, parameters):
                raise outcome
        counts.append(outcome.rowcount)
    return counts


async def _fetch_all(
    conn: AsyncConnection, sql: str, parameters: Parameters = ()
) -> Iterable[sqlite3.Row]:
    """Run one query of the hot path; its rows, in the same trip."""
    driver = await _driver(conn)
    with _sqlalchemy_errors(sql, parameters):
        return await driver.execute_fetchall(sql, parameters)


async def _driver(conn: AsyncConnection) -> aiosqlite.Connection:
    raw = await conn.get_raw_connection()
    return cast("aiosqlite.Connection", raw.driver_connection)


@contextmanager
def _sqlalchemy_errors(sql: str, parameters: Parameters) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc


async def _insert_partition(
    conn: AsyncConnection,
    table: str,
    readings: Sequence[Reading],
    owners: dict[str, str | None],
    now: datetime,
) -> int:
    *_, inserted, _ = await _execute_in_turn(
        conn,
        [
            (sqlite_new_readings_sql(table), {"rows": batch_rows(readings, owners)}),
            *((sqlite_rollup_sql(rollup), {}) for rollup in ROLLUPS),
            (sqlite_insert_new_sql(table), {"created_at": sqlite_timestamp(now)}),
            (f"DELETE FROM {SQLITE_NEW}", {}),
        ],
    )
    return inserted


_DEVICE_COLUMNS = ("device_id", "device_type", "last_seen", "battery_level", "battery_updated_at")


_UPSERT_DEVICES = f"""
INSERT INTO iot_devices ({", ".join(_DEVICE_COLUMNS)}, status, created_at, updated_at)
SELECT {_unpack(_DEVICE_COLUMNS)}, 'active', :now, :now FROM json_each(:rows) WHERE true
{registry_update("max(coalesce(iot_devices.last_seen, excluded.last_seen), excluded.last_seen)")}
"""


class SQLiteBackend:
    """Monthly tables under a UNION ALL view; statements unpack JSON with json_each."""

    def __init__(self) -> None:
        self._partitions = UnionViewPartitions(energy_partition)

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

    async def prepare(self, conn: AsyncConnection) -> None:
        await self._partitions.load(conn)
        views = await conn.run_sync(lambda sync: inspect(sync).get_view_names())
        if VIEW_NAME not in views:
            await self._partitions.rebuild_view(conn)

    async def stray_rows(self, conn: AsyncConnection) -> int:
        """Always 0: every SQLite reading is in its month's own table."""
        return 0

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
        self,
        conn: AsyncConnection,
        readings: Sequence[Reading],
        owners: dict[str, str | None],
        now: datetime,
    ) -> int:
        by_month: dict[Month, list[Reading]] = defaultdict(list)
        for reading in readings:
            by_month[Month.of(reading.recorded_at)].append(reading)
        inserted = 0
        for month, group in by_month.items():
            inserted += await _insert_partition(conn, month.table_name, group, owners, now)
        return inserted

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        if not seen:
            return
        rows = [
            (
                s.device_id,
                s.device_type,
                sqlite_timestamp(s.last_seen),
                s.battery_level,
                None if s.battery_updated_at is None else sqlite_timestamp(s.battery_updated_at),
            )
            for s in seen
        ]
        await _execute(
            conn, _UPSERT_DEVICES, {"rows": json.dumps(rows), "now": sqlite_timestamp(now)}
        )
