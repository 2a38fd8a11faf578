"""`meterflow backup` and `meterflow restore`: whole-database copies."""

from __future__ import annotations

from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, db_option, settings_for
from storage import StorageError
from storage.backup import (
    backup_postgres,
    backup_sqlite,
    daemons_connected,
    restore_postgres,
    restore_sqlite,
)


def _is_postgres(url: str) -> bool:
    return url.startswith("postgres")


@click.command()
@config_option
@db_option
@click.option(
    "--to",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the backups (created owner-only).",
)
@click.option("--keep", default=7, show_default=True, help="How many backups to keep.")
def backup(config_file: Path | None, db: str | None, directory: Path, keep: int) -> None:
    """Back up the database: SQLite online and gzipped, PostgreSQL with pg_dump.

    Safe while the daemon writes: the copy is one consistent state.
    """
    url = settings_for(config_file, **{"storage.url": db}).storage.url
    try:
        if _is_postgres(url):
            made = backup_postgres(url, directory, keep=keep)
        else:
            made = backup_sqlite(url, directory, keep=keep)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up to {made}")


@click.command()
@config_option
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database.")
def restore(config_file: Path | None, db: str | None, file: Path, force: bool) -> None:  # noqa: FBT001
    """Replace the database with a backup; refused while a daemon uses the database."""
    url = settings_for(config_file, **{"storage.url": db}).storage.url
    try:
        if _is_postgres(url):
            in_use = complete(daemons_connected(url)) > 0
            restore_postgres(file, url, in_use=in_use, force=force)
            click.echo(f"restored {file} into the PostgreSQL database")
        else:
            click.echo(f"restored {file} to {restore_sqlite(file, url, force=force)}")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
