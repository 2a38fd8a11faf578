"""`meterflow privacy`: a person's data, found wherever it lives (storage/privacy.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import (
    archive_dir_option,
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.settings import Settings
from storage.engine import sqlite_path
from storage.erasure import (
    Erased,
    Erasure,
    ErasureLog,
    erase,
    erase_archives,
    postgres_vacuum,
    sqlite_scrub,
)
from storage.privacy import (
    Format,
    Person,
    TableRows,
    archived_rows,
    live_rows,
    merged,
    spans_of,
    write_export,
)


def _person(user_id: str | None, device_id: str | None) -> Person:
    if (user_id is None) == (device_id is None):
        raise click.UsageError("give --user ID or --device ID")
    return Person("user", str(user_id)) if user_id is not None else Person("device", str(device_id))


F = TypeVar("F", bound=Callable[..., object])


def whose(command: F) -> F:
    """--user or --device: whose data."""
    command = click.option("--device", "device_id", help="One device, all of it.")(command)
    return click.option("--user", "user_id", help="A user: the readings and devices while theirs.")(
        command
    )


@click.group()
def privacy() -> None:
    """A person's data: everything meterflow keeps of a user or a device."""


@privacy.command("export")
@config_option
@db_option
@whose
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)  # fmt: skip
@click.option("--out", "directory", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="A new (or empty) directory, made owner-only.")  # fmt: skip
@archive_dir_option
def privacy_export(
    config_file: Path | None,
    db: str | None,
    user_id: str | None,
    device_id: str | None,
    export_format: Format,
    directory: Path,
    archive_dir: Path | None,
) -> None:
    """Every reading (live and archived months), rollup row, registry row, counter and
    dead letter of a user or a device, one file per table, with a manifest of counts and
    checksums; readable by their owner only."""
    person = _person(user_id, device_id)
    settings = settings_for(config_file, **{"storage.url": db})
    live = complete(_live(settings, person))
    archives = archive_dir or settings.retention.archive_dir
    archived = [rows for _, rows in archived_rows(archives, person, settings.storage.key)]
    try:
        written = write_export(directory, person, merged(live, archived), export_format)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    for file in written:
        click.echo(f"{file.name}: {file.rows} rows")
    click.echo(f"wrote {directory}/manifest.json")
    audited(settings, str(person), sum(file.rows for file in written))


@privacy.command("erase")
@config_option
@db_option
@whose
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@archive_dir_option
def privacy_erase(
    config_file: Path | None,
    db: str | None,
    user_id: str | None,
    device_id: str | None,
    dry_run: bool,  # noqa: FBT001
    archive_dir: Path | None,
) -> None:
    """Erase a user's or a device's data from the database, its archived months and the
    audit trail, leaving no copy in the file, its WAL or free pages; logged (ids and time
    only) so that a restore erases it again. Safe while the daemon runs."""
    person = _person(user_id, device_id)
    settings = settings_for(config_file, **{"storage.url": db})
    archives = archive_dir or settings.retention.archive_dir
    erased, files = complete(_erase(settings, person, archives, dry_run=dry_run))
    verb = "would erase" if dry_run else "erased"
    for table, rows in sorted(erased.rows.items()):
        click.echo(f"{table}: {verb} {rows} rows")
    for path, rows in files.items():
        click.echo(f"{path.name}: {verb} {rows} readings")
    if not erased.rows and not files:
        click.echo(f"nothing of {person.kind} {person.id!r} is stored")
    if dry_run:
        return
    ErasureLog(settings.privacy.erasure_log).append(Erasure(datetime.now(UTC), person))
    # The trail must not name whom it erased: the log outside the database does.
    audited(settings, "an erased person (see privacy.erasure_log)", sum(erased.rows.values()))


@privacy.command("reapply")
@config_option
@db_option
@archive_dir_option
def privacy_reapply(config_file: Path | None, db: str | None, archive_dir: Path | None) -> None:
    """Apply every logged erasure again (`restore` does, after bringing a backup back)."""
    settings = settings_for(config_file, **{"storage.url": db})
    click.echo(reapply(settings, archive_dir or settings.retention.archive_dir))


def reapply(settings: Settings, archives: Path) -> str:
    """Erase again everyone in the erasure log; what it did, in a line."""
    log = list(ErasureLog(settings.privacy.erasure_log))
    rows = 0
    for erasure in log:
        erased, files = complete(_erase(settings, erasure.person, archives, dry_run=False))
        rows += sum(erased.rows.values()) + sum(files.values())
    return f"applied {len(log)} logged erasures again: {rows} rows erased"


async def _erase(
    settings: Settings, person: Person, archives: Path, *, dry_run: bool
) -> tuple[Erased, dict[Path, int]]:
    async with open_database(settings) as database:
        conn = database.conn
        if conn.dialect.name == "sqlite":
            # Zero what the deletes free, whatever this SQLite was built with.
            await conn.exec_driver_sql("PRAGMA secure_delete = ON")
            await conn.commit()
        transaction = await conn.begin()
        erased = await erase(conn, database.backend, person)
        await (transaction.rollback() if dry_run else transaction.commit())
    files = erase_archives(archives, person, key=settings.storage.key, dry_run=dry_run)
    if not dry_run:
        path = sqlite_path(settings.storage.url)
        if path is not None:
            sqlite_scrub(path, settings.storage.key)
        else:
            await postgres_vacuum(settings.storage.url)
    return erased, files


async def _live(settings: Settings, person: Person) -> list[TableRows]:
    async with open_database(settings) as database, database.conn.begin():
        spans = await spans_of(database.conn, person)
        return [t async for t in live_rows(database.conn, database.backend, person, spans)]
