"""The SQLite backend: a whole batch in one statement per partition, passed as one JSON text.

aiosqlite runs statements in its own thread. With `executemany`, the sqlite3 module takes
the GIL back for every row, and while the event loop thread is busy receiving, each of
those hand-offs can wait a full switch interval (5 ms): a 5,000-row batch then took
seconds to commit. Handing SQLite the batch as one JSON array and letting `json_each`
unpack it keeps every per-row step inside SQLite, which runs without the GIL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import VIEW_NAME, Month, UnionViewPartitions
from storage.devices import DeviceSighting, registry_update
from storage.records import Reading, reading_values
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


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return sqlite_timestamp(value)
    raise TypeError(f"{type(value).__name__} is not a column value")


async def _insert_partition(
    conn: AsyncConnection,
    table: str,
    readings: Sequence[Reading],
    owners: dict[str, str | None],
    now: datetime,
) -> int:
    rows = json.dumps(
        [reading_values(r, owners.get(r.device_id)) for r in readings], default=_json_value
    )
    await conn.exec_driver_sql(sqlite_new_readings_sql(table), {"rows": rows})
    for rollup in ROLLUPS:
        await conn.exec_driver_sql(sqlite_rollup_sql(rollup))
    result = await conn.exec_driver_sql(
        sqlite_insert_new_sql(table), {"created_at": sqlite_timestamp(now)}
    )
    await conn.exec_driver_sql(f"DELETE FROM {SQLITE_NEW}")
    return int(result.rowcount)


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
        result = await conn.exec_driver_sql(
            "SELECT json_group_array(json_array(device_id, user_id)) FROM iot_devices "
            "WHERE device_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(device_ids)),),
        )
        pairs: list[tuple[str, str | None]] = json.loads(result.scalar_one())
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
        await conn.exec_driver_sql(
            _UPSERT_DEVICES, {"rows": json.dumps(rows), "now": sqlite_timestamp(now)}
        )
