"""Exports for pandas, Polars, DuckDB and spreadsheets: one file per month, streamed.

Rows are read in chunks of `CHUNK_ROWS` (a server-side cursor on PostgreSQL) and written
as they come, so memory stays flat whatever a month holds. Parquet keeps types (UTC
timestamps, floats, NULLs); CSV has a header and ISO 8601 times.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import Month
from storage.backend import backend_for
from storage.errors import StorageError
from storage.pseudonyms import Pseudonyms

ExportFormat = Literal["parquet", "csv"]
CHUNK_ROWS = 50_000
COLUMNS = (
    "device_id", "user_id", "data_type", "recorded_at", "energy_amount", "instantaneous_power",
    "voltage", "current", "battery_pct", "irradiance_wm2", "panel_temp_c", "state_of_charge",
    "cost", "carbon_footprint", "quality", "metadata", "created_at",
)  # fmt: skip
NUMBERS = frozenset((
    "energy_amount", "instantaneous_power", "voltage", "current", "battery_pct",
    "irradiance_wm2", "panel_temp_c", "state_of_charge", "cost", "carbon_footprint",
))  # fmt: skip


def _query(conn: AsyncConnection, month: Month, device_id: str | None) -> Select[Any]:
    c = backend_for(conn.dialect.name).readings_table(month).c
    query = select(*(c[name] for name in COLUMNS)).where(
        c.recorded_at >= month.start, c.recorded_at < month.end
    )
    if device_id is not None:
        query = query.where(c.device_id == device_id)
    return query.order_by(c.device_id, c.recorded_at)


async def count_rows(conn: AsyncConnection, month: Month, device_id: str | None) -> int:
    counted = await conn.scalar(
        select(func.count()).select_from(_query(conn, month, device_id).subquery())
    )
    return int(counted or 0)


async def export_month(
    conn: AsyncConnection,
    month: Month,
    directory: Path,
    export_format: ExportFormat,
    *,
    device_id: str | None = None,
    progress: Callable[[int], None] = lambda _: None,
    pseudonyms: Pseudonyms | None = None,
) -> Path:
    """Write one month's readings to `directory` (which exists); return the file. With
    `pseudonyms`, device and user ids are replaced by theirs and `metadata` (free text a
    device sent, which may name it) is left out."""
    target = directory / f"{month.table_name}.{export_format}"
    partial = target.with_name(target.name + ".partial")
    result = await conn.stream(_query(conn, month, device_id))
    writer = _ParquetWriter(partial) if export_format == "parquet" else _CsvWriter(partial)
    try:
        async for chunk in result.partitions(CHUNK_ROWS):
            rows = [tuple(row) for row in chunk]
            if pseudonyms is not None:
                rows = [_pseudonymous(row, pseudonyms) for row in rows]
            writer.write(rows)
            progress(len(rows))
    finally:
        writer.close()
    partial.replace(target)
    return target


_DEVICE, _USER, _METADATA = (COLUMNS.index(c) for c in ("device_id", "user_id", "metadata"))


def _pseudonymous(row: tuple[object, ...], pseudonyms: Pseudonyms) -> tuple[object, ...]:
    values = list(row)
    values[_DEVICE] = pseudonyms("device", cast("str", values[_DEVICE]))
    values[_USER] = pseudonyms("user", cast("str | None", values[_USER]))
    values[_METADATA] = None
    return tuple(values)


class _CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMNS)

    def write(self, rows: Iterable[Sequence[object]]) -> None:
        self._csv.writerows([[_text(value) for value in row] for row in rows])

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.parquet as pq  # noqa: PLC0415
        except ImportError as exc:
            raise StorageError(
                "Parquet export needs pyarrow: pip install 'meterflow[analytics]'"
            ) from exc
        self._pa = pa
        utc = pa.timestamp("us", tz="UTC")
        text, number = pa.string(), pa.float64()
        types = {"recorded_at": utc, "created_at": utc}
        types |= dict.fromkeys(NUMBERS, number)
        self._schema = pa.schema([(name, types.get(name, text)) for name in COLUMNS])
        self._writer = pq.ParquetWriter(path, self._schema, compression="zstd")

    def write(self, rows: Sequence[Sequence[object]]) -> None:
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
        arrays = [
            self._pa.array([_json(v) for v in values] if name == "metadata" else values,
                           type=self._schema.field(name).type)
            for name, values in zip(COLUMNS, columns, strict=True)
        ]  # fmt: skip
        self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def _json(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _text(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return _json(value)
    return value
