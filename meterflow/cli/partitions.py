"""`meterflow partitions`: the monthly partitions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

from meterflow.cli.common import (
    archive_dir_option,
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.cli.output import Cell, OutputFormat, format_option, render
from meterflow.settings import Settings
from partitions import (
    Month,
    PartitionError,
    PartitionInfo,
    PartitionStore,
    apply_retention,
    parse_age,
    retired,
)
from partitions.postgres_store import ARCHIVE_SUFFIX as POSTGRES_ARCHIVE_SUFFIX
from partitions.sqlite_store import ARCHIVE_SUFFIX as SQLITE_ARCHIVE_SUFFIX
from partitions.store import archived_months
from storage import open_engine
from storage.backend import backend_for_url
from storage.database import connect

T = TypeVar("T")


@click.group()
def partitions() -> None:
    """Monthly partitions."""


@partitions.command("repair")
@config_option
@db_option
def partitions_repair(config_file: Path | None, db: str | None) -> None:
    """PostgreSQL: move readings out of a DEFAULT partition into their months' partitions."""
    settings = settings_for(config_file, **{"storage.url": db})
    moved = complete(_repair(settings))
    for month, rows in sorted(moved.items()):
        click.echo(f"{month}: moved {rows} readings into {month.table_name}")
    click.echo("repaired" if moved else "no readings outside monthly partitions")


async def _repair(settings: Settings) -> dict[Month, int]:
    url = settings.storage.url
    engine = open_engine(url, settings.storage.sqlite)
    try:
        async with engine.connect() as conn, conn.begin():
            return await backend_for_url(url).move_stray_rows(conn)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[tuple[PartitionStore, frozenset[Month]]]:
    """The database's partition store, and the months it has partitions for."""
    url, options = settings.storage.url, settings.storage.sqlite
    async with connect(url, options) as database:
        months = database.backend.partitions.months
        await database.conn.close()
        engine = open_engine(url, options)
        try:
            yield database.backend.partition_store(engine, url, options), months
        finally:
            await engine.dispose()


def _run(settings: Settings, work: Callable[[PartitionStore, frozenset[Month]], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _store(settings) as (store, months):
            return await work(store, months)

    return complete(go())


@partitions.command("list")
@config_option
@db_option
@archive_dir_option
@format_option
def partitions_list(
    config_file: Path | None,
    db: str | None,
    archive_dir: Path | None,
    output_format: OutputFormat,
) -> None:
    """Each month: readings, size on disk, first and last reading; archived months too."""
    settings = settings_for(config_file, **{"storage.url": db})

    async def inventory(store: PartitionStore, _: frozenset[Month]) -> list[PartitionInfo]:
        return await store.inventory()

    infos = _run(settings, inventory)
    rows: list[list[Cell]] = [
        [str(i.month), "live", i.rows, _size(i.size_bytes, output_format), i.first_reading,
         i.last_reading]
        for i in infos
    ]  # fmt: skip
    directory = archive_dir or settings.retention.archive_dir
    archives = [
        found
        for suffix in (SQLITE_ARCHIVE_SUFFIX, POSTGRES_ARCHIVE_SUFFIX)
        for found in archived_months(directory, suffix)
    ]
    for month, path in sorted(archives):
        size = _size(path.stat().st_size, output_format)
        rows.append([str(month), f"archived: {path}", None, size, None, None])
    headers = ("month", "where", "readings", "size", "first_reading", "last_reading")
    click.echo(render(headers, rows, output_format))


@partitions.command("create")
@config_option
@db_option
@click.option("--ahead", type=click.IntRange(0, 120), default=3, show_default=True,
              help="Months after the current one to create.")  # fmt: skip
def partitions_create(config_file: Path | None, db: str | None, ahead: int) -> None:
    """Create the partitions of the current month and the next N."""
    settings = settings_for(config_file, **{"storage.url": db})

    async def create() -> list[Month]:
        async with open_database(settings) as database:
            month = Month.of(datetime.now(UTC))
            wanted = [month]
            for _ in range(ahead):
                month = month.next()
                wanted.append(month)
            conn, partitions = database.conn, database.backend.partitions
            async with conn.begin():
                return await partitions.ensure(conn, wanted)

    created = complete(create())
    for month in created:
        click.echo(f"created {month.table_name}")
    if not created:
        click.echo("every partition was already there")


@partitions.command("drop")
@config_option
@db_option
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age like 24mo or 2y: months before the newest N are dropped (N >= 2).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")  # fmt: skip
def partitions_drop(config_file: Path | None, db: str | None, older_than: str, yes: bool) -> None:  # noqa: FBT001
    """Delete the partitions (and readings) of months older than the given age."""
    settings = settings_for(config_file, **{"storage.url": db})
    try:
        keep = parse_age(older_than)
    except PartitionError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    _retire(settings, keep, "drop", settings.retention.archive_dir, confirm=not yes)


@partitions.command("archive")
@config_option
@db_option
@click.argument("month", type=Month.parse)
@click.option("--to", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="Directory for the archive file (default: retention.archive_dir).")  # fmt: skip
def partitions_archive(
    config_file: Path | None, db: str | None, month: Month, directory: Path | None
) -> None:
    """Move one month out of the live database into a file (SQLite file, or CSV.gz)."""
    settings = settings_for(config_file, **{"storage.url": db})
    target = directory or settings.retention.archive_dir

    async def archive(store: PartitionStore, _: frozenset[Month]) -> Path:
        return await store.archive(month, target)

    path = _run(settings, archive)
    click.echo(f"archived {month} to {path}")


@partitions.command("restore")
@config_option
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def partitions_restore(config_file: Path | None, db: str | None, file: Path) -> None:
    """Bring an archived month back into the live database (readings already there stay)."""
    settings = settings_for(config_file, **{"storage.url": db})

    async def restore(store: PartitionStore, _: frozenset[Month]) -> tuple[Month, int]:
        return await store.restore(file)

    month, added = _run(settings, restore)
    click.echo(f"restored {month}: {added} readings added")


@partitions.command("apply-retention")
@config_option
@db_option
def partitions_apply_retention(config_file: Path | None, db: str | None) -> None:
    """Apply the retention policy in config ([retention]) now."""
    settings = settings_for(config_file, **{"storage.url": db})
    retention = settings.retention
    if retention.keep_months is None:
        raise click.ClickException("no retention policy: set retention.keep_months")
    _retire(settings, retention.keep_months, retention.action, retention.archive_dir, confirm=False)


def _retire(settings: Settings, keep: int, action: str, directory: Path, *, confirm: bool) -> None:
    current = Month.of(datetime.now(UTC))

    async def retire(store: PartitionStore, months: frozenset[Month]) -> list[tuple[Month, str]]:
        if confirm:
            doomed = retired(months, current, keep)
            if doomed and not click.confirm(
                f"delete {len(doomed)} months ({doomed[0]} to {doomed[-1]}) and their readings?"
            ):
                raise click.Abort
        return await apply_retention(
            store,
            months,
            current,
            keep_months=keep,
            action="drop" if action == "drop" else "archive",
            archive_dir=directory,
        )

    done = _run(settings, retire)
    for month, outcome in done:
        click.echo(f"{month}: {outcome}")
    if not done:
        click.echo(f"nothing older than the newest {keep} months")


def _size(size: int | None, output_format: OutputFormat) -> Cell:
    if size is None or output_format != "table":
        return size
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"
