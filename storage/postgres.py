"""The PostgreSQL backend: `energy_data` range-partitioned by month; batches as arrays.

A batch travels as one array per column and `unnest` turns them back into rows: one
statement and one round trip for any number of readings, with every row still checked
against the unique key (`ON CONFLICT DO NOTHING`), which COPY cannot do by itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import BASE_NAME, NativePartitions
from storage.devices import DeviceSighting
from storage.records import Reading
from storage.tables import energy_parent, metadata

# Held by a transaction that reads or changes the schema version, so that daemons starting
# together on an empty database create the schema once.
_SCHEMA_LOCK = 0x6D666C77  # "mflw"

_INSERT_READINGS = f"""
INSERT INTO {BASE_NAME} (user_id, device_id, data_type, energy_amount, instantaneous_power,
    voltage, current, battery_pct, irradiance_wm2, panel_temp_c, recorded_at, quality,
    validated, metadata, created_at)
SELECT u, d, t, e, p, v, c, b, i, pt, r, q, true, m::jsonb, $14
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[],
            $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::timestamptz[],
            $12::text[], $13::text[]) AS x(u, d, t, e, p, v, c, b, i, pt, r, q, m)
ON CONFLICT DO NOTHING
"""

_NEWER_BATTERY = (
    "excluded.battery_updated_at IS NOT NULL AND (iot_devices.battery_updated_at IS NULL"
    " OR excluded.battery_updated_at >= iot_devices.battery_updated_at)"
)

_UPSERT_DEVICES = f"""
INSERT INTO iot_devices (device_id, device_type, last_seen, battery_level, battery_updated_at,
    status, created_at, updated_at)
SELECT d, t, l, b, bu, 'active', $6, $6
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::timestamptz[])
    AS x(d, t, l, b, bu)
ON CONFLICT (device_id) DO UPDATE SET
    last_seen = greatest(iot_devices.last_seen, excluded.last_seen),
    battery_level = CASE WHEN {_NEWER_BATTERY} THEN excluded.battery_level
                         ELSE iot_devices.battery_level END,
    battery_updated_at = CASE WHEN {_NEWER_BATTERY} THEN excluded.battery_updated_at
                              ELSE iot_devices.battery_updated_at END,
    status = 'active',
    updated_at = excluded.updated_at
"""


class PostgresBackend:
    def __init__(self) -> None:
        self._partitions = NativePartitions()

    @property
    def partitions(self) -> NativePartitions:
        return self._partitions

    async def lock_schema(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")

    async def create_tables(self, conn: AsyncConnection) -> None:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(energy_parent().create, checkfirst=True)

    async def prepare(self, conn: AsyncConnection) -> None:
        await self._partitions.load(conn)

    async def registered_owners(
        self, conn: AsyncConnection, device_ids: Sequence[str]
    ) -> dict[str, str | None]:
        result = await conn.exec_driver_sql(
            "SELECT device_id, user_id FROM iot_devices WHERE device_id = ANY($1::text[])",
            (list(device_ids),),
        )
        return {row.device_id: row.user_id for row in result}

    async def insert_readings(
        self,
        conn: AsyncConnection,
        readings: Sequence[Reading],
        owners: dict[str, str | None],
        now: datetime,
    ) -> int:
        if not readings:
            return 0
        columns: tuple[list[object], ...] = tuple([] for _ in range(13))
        for r in readings:
            row = (
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
                r.recorded_at,
                r.quality,
                None if r.metadata is None else json.dumps(r.metadata),
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        result = await conn.exec_driver_sql(_INSERT_READINGS, (*columns, now))
        return int(result.rowcount)

    async def upsert_devices(
        self, conn: AsyncConnection, seen: Sequence[DeviceSighting], now: datetime
    ) -> None:
        if not seen:
            return
        # One lock order for every daemon, so concurrent upserts cannot deadlock.
        ordered = sorted(seen, key=lambda s: s.device_id)
        await conn.exec_driver_sql(
            _UPSERT_DEVICES,
            (
                [s.device_id for s in ordered],
                [s.device_type for s in ordered],
                [s.last_seen for s in ordered],
                [s.battery_level for s in ordered],
                [s.battery_updated_at for s in ordered],
                now,
            ),
        )
