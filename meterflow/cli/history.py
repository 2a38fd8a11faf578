"""`meterflow import`: history from a CSV or Parquet file, as if each row were a message."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ingest.history import Meter, count_rows
from ingest.history_process import DecodedBatch, DecodeJob, decoding
from meterflow.cli.audit import audited
from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.cli.devices import DEVICE_TYPES
from meterflow.settings import Settings
from storage import BatchWriter, DeviceType, SQLiteOptions, WriteBatch, open_engine
from storage.records import WriteResult
from storage.settings import StorageSettings
from storage.tables import dead_letters

# Rows per transaction: a commit writes every page the batch changed to the log, and a
# thousand devices' rows change a page per device in each index keyed by device, however
# few rows each brings; so the more rows a commit, the fewer bytes each costs.
BATCH_ROWS = 100_000
# The import's connection holds a batch's changed pages in its cache (SQLite's 2 MiB would
# write them to the log before the commit, and again at it) and its temporary tables and
# statement journals in memory: a third of the bytes read and written, for some 170 MiB
# more memory at the peak (docs/performance.md, "The import's writes").
IMPORT_CACHE_MIB = 64
SWITCH_INTERVAL_S = 0.0002


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    implausible: int = 0

    def add(self, result: WriteResult) -> None:
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.implausible += result.implausible


@click.command("import")
@config_option
@db_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--device", "device_id",
              help="The device a utility's export (columns start,end,kwh) is of.")  # fmt: skip
@click.option("--type", "device_type", type=click.Choice(DEVICE_TYPES), default="smart_meter",
              show_default=True, help="With --device: its type.")  # fmt: skip
def import_history(
    config_file: Path | None,
    db: str | None,
    file: Path,
    device_id: str | None,
    device_type: DeviceType,
) -> None:
    """Import readings from a CSV or Parquet file: columns device_type, device_id, ts and
    the canonical payload's fields (README). Each row is validated as a message would be;
    a rejected row becomes a dead letter naming its line. Running it again stores nothing
    twice."""
    settings = settings_for(config_file, **{"storage.url": db})
    meter = None if device_id is None else Meter(device_id, device_type)
    # Three threads share the interpreter here (the event loop, SQLite's, and the one that
    # decodes a small file or receives a large one's batches); with the default 5 ms
    # switch interval, SQLite's waits for the lock between statements and the import runs
    # a quarter slower (docs/performance.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    started = time.monotonic()
    with click.progressbar(length=count_rows(file), label=file.name, file=sys.stderr) as bar:
        report = complete(import_file(settings, file, meter, bar.update))
    seconds = time.monotonic() - started
    audited(settings, f"file {file.name}", report.stored)
    click.echo(
        f"{file.name}: {report.rows} rows, {report.stored} readings stored, "
        f"{report.duplicates} already there, {report.rejected} rejected (dead letters), "
        f"{report.implausible} implausible, in {seconds:.1f} s "
        f"({report.rows / max(seconds, 1e-9):,.0f} rows/s)"
    )


async def import_file(
    settings: Settings, path: Path, meter: Meter | None, progress: Callable[[int], None]
) -> ImportReport:
    """Store the file's readings and dead letters, a transaction per BATCH_ROWS rows, the
    next batches decoded (`ingest.history_process`) while the last one commits. Decoding
    starts first: a process takes longer to start than the database to open."""
    job = DecodeJob(
        path, meter, settings.mqtt.topic_prefix, settings.ingest, datetime.now(UTC), BATCH_ROWS
    )
    async with decoding(job) as batches:
        return await _store(settings, path, batches, progress)


async def _store(
    settings: Settings,
    path: Path,
    batches: AsyncIterable[DecodedBatch],
    progress: Callable[[int], None],
) -> ImportReport:
    async with open_database(settings) as database:
        # The dead letters an earlier import of the file stored are not stored again.
        stored_before = await _rejected_from(database.conn, path.name)
    engine = open_engine(settings.storage.url, import_options(settings.storage))
    report = ImportReport()
    writer = BatchWriter(
        engine,
        url=settings.storage.url,
        unknown_devices=settings.ingest.unknown_devices,
        max_power_kw=settings.devices.max_power_kw,
        priced=settings.prices.configured,
    )
    try:
        async with writer:
            pending: asyncio.Future[WriteResult] | None = None
            async for batch in batches:
                letters = [letter for letter in batch.letters if letter.reason not in stored_before]
                submitted = await writer.submit(WriteBatch(batch.readings, letters))
                if pending is not None:
                    report.add(await pending)
                pending = submitted
                report.rows += batch.rows
                report.rejected += batch.rejected
                progress(batch.rows)
            if pending is not None:
                report.add(await pending)
    finally:
        await engine.dispose()
    return report


def import_options(storage: StorageSettings) -> SQLiteOptions:
    """The import's SQLite options: the configured ones, with IMPORT_CACHE_MIB of cache and
    temporary storage in memory."""
    return replace(storage.sqlite, cache_mib=IMPORT_CACHE_MIB, temp_in_memory=True)


async def _rejected_from(conn: AsyncConnection, source: str) -> set[str]:
    """The reasons of dead letters an earlier import of a file of this name stored, so that
    importing it again stores none twice."""
    async with conn.begin():
        result = await conn.scalars(
            select(dead_letters.c.reason).where(dead_letters.c.reason.like(f"{source} line %"))
        )
        return set(result)
