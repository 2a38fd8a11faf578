"""`meterflow privacy`: a person's data, found wherever it lives (storage/privacy.py)."""

from __future__ import annotations

from pathlib import Path

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.settings import Settings
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


@click.group()
def privacy() -> None:
    """A person's data: everything meterflow keeps of a user or a device."""


@privacy.command("export")
@config_option
@db_option
@click.option("--user", "user_id", help="A user: the readings and devices while theirs.")
@click.option("--device", "device_id", help="One device, all of it.")
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)  # fmt: skip
@click.option("--out", "directory", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="A new (or empty) directory, made owner-only.")  # fmt: skip
@click.option("--archive-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where archived months are (default: retention.archive_dir).")  # fmt: skip
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
    archived = [rows for _, rows in archived_rows(archives, person)]
    try:
        written = write_export(directory, person, merged(live, archived), export_format)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    for file in written:
        click.echo(f"{file.name}: {file.rows} rows")
    click.echo(f"wrote {directory}/manifest.json")
    audited(settings, str(person), sum(file.rows for file in written))


async def _live(settings: Settings, person: Person) -> list[TableRows]:
    async with open_database(settings) as database, database.conn.begin():
        spans = await spans_of(database.conn, person)
        return [t async for t in live_rows(database.conn, database.backend, person, spans)]
