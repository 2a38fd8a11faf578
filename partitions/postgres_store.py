"""PostgreSQL: a month is archived by detaching its partition and dumping it as gzipped CSV.

Detach, dump and drop happen in one transaction: if the dump fails, the partition stays
attached. The file is synced and renamed into place before the commit, so a crash leaves
either the partition (and perhaps a file a rerun overwrites) or the file, never neither.
CSV with a header reads back into PostgreSQL, pandas, DuckDB or a spreadsheet alike.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import os
from pathlib import Path
from typing import BinaryIO, cast

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions.errors import PartitionError
from partitions.naming import BASE_NAME, Month, month_of_table
from partitions.native import CREATION_LOCK, partition_ddl
from partitions.store import PartitionInfo, set_aside

log = structlog.get_logger("meterflow.partitions")

ARCHIVE_SUFFIX = ".csv.gz"
_STAGING = "meterflow_restore"


class PostgresPartitionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def inventory(self) -> list[PartitionInfo]:
        async with self._engine.connect() as conn:
            sizes = await _partitions(conn)
            infos = []
            for month, size in sorted(sizes.items()):
                result = await conn.exec_driver_sql(
                    f"SELECT count(*), min(recorded_at), max(recorded_at) FROM {month.table_name}"
                )
                rows, first, last = result.one()
                infos.append(PartitionInfo(month, rows, size, first, last))
            await conn.rollback()
            return infos

    async def drop(self, month: Month) -> int:
        async with self._engine.connect() as conn, conn.begin():
            rows = await _require(conn, month)
            await conn.exec_driver_sql(f"DROP TABLE {month.table_name}")
            return rows

    async def archive(self, month: Month, directory: Path) -> Path:
        await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        target = directory / f"{month.table_name}{ARCHIVE_SUFFIX}"
        partial = target.with_name(target.name + ".partial")
        table = month.table_name
        async with self._engine.connect() as conn, conn.begin():
            rows = await _require(conn, month)
            await conn.exec_driver_sql(f"ALTER TABLE {BASE_NAME} DETACH PARTITION {table}")
            driver = await _driver(conn)
            descriptor = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            with os.fdopen(descriptor, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb") as out:

                    async def write(chunk: bytes) -> None:
                        out.write(chunk)

                    await driver.copy_from_table(table, output=write, format="csv", header=True)
                raw.flush()
                os.fsync(raw.fileno())
            partial.replace(target)
            await conn.exec_driver_sql(f"DROP TABLE {table}")
        log.info("partition archived", month=str(month), rows=rows, file=str(target))
        return target

    async def restore(self, path: Path) -> tuple[Month, int]:
        month = month_of_table(path.name.removesuffix(ARCHIVE_SUFFIX))
        if month is None or not path.name.endswith(ARCHIVE_SUFFIX):
            raise PartitionError(
                f"{path.name} is not an archived month (energy_data_YYYY_MM{ARCHIVE_SUFFIX})"
            )
        async with self._engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CREATION_LOCK})")
            await conn.exec_driver_sql(partition_ddl(month))
            await conn.exec_driver_sql(
                f"CREATE TEMP TABLE {_STAGING} (LIKE {BASE_NAME}) ON COMMIT DROP"
            )
            driver = await _driver(conn)
            # An archive of an older shape lacks the columns added since: they stay NULL.
            with gzip.open(path, "rt", newline="") as text:
                header = next(csv.reader(text), [])
            with gzip.open(path, "rb") as source:
                await driver.copy_to_table(
                    _STAGING,
                    source=cast(BinaryIO, source),
                    columns=header,
                    format="csv",
                    header=True,
                )
            columns = await _columns_but_id(conn)
            result = await conn.exec_driver_sql(
                f"INSERT INTO {BASE_NAME} ({columns}) SELECT {columns} FROM {_STAGING} "
                "ON CONFLICT DO NOTHING"
            )
        set_aside(path)
        return month, int(result.rowcount)


async def _partitions(conn: AsyncConnection) -> dict[Month, int]:
    result = await conn.exec_driver_sql(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        f"WHERE p.relname = '{BASE_NAME}'"
    )
    return {m: int(size) for name, size in result if (m := month_of_table(name)) is not None}


async def _require(conn: AsyncConnection, month: Month) -> int:
    # The creation lock keeps a daemon from re-creating the month while it goes.
    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CREATION_LOCK})")
    if month not in await _partitions(conn):
        raise PartitionError(f"there is no partition for {month}")
    result = await conn.exec_driver_sql(f"SELECT count(*) FROM {month.table_name}")
    return int(result.scalar_one())


async def _columns_but_id(conn: AsyncConnection) -> str:
    result = await conn.exec_driver_sql(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{BASE_NAME}' AND column_name <> 'id' ORDER BY ordinal_position"
    )
    return ", ".join(f'"{name}"' for (name,) in result)


async def _driver(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return driver
