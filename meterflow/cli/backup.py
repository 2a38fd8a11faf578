"""`meterflow backup` and `meterflow restore`: whole-database copies."""

from __future__ import annotations

from pathlib import Path

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import config_option, db_option, settings_for
from meterflow.cli.privacy import reapply
from storage import backend_for_url
from storage.erasure import ErasureLog
from storage.errors import SchemaVersionError


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
    made = backend_for_url(url).backup(url, directory, keep)
    click.echo(f"backed up to {made}")


@click.command()
@config_option
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database.")
def restore(config_file: Path | None, db: str | None, file: Path, force: bool) -> None:  # noqa: FBT001
    """Replace the database with a backup; refused while a daemon uses the database."""
    settings = settings_for(config_file, **{"storage.url": db})
    url = settings.storage.url
    where = backend_for_url(url).restore(file, url, force=force)
    click.echo(f"restored {file} {where}")
    audited(settings, f"backup {file.name}", None)
    if not any(ErasureLog(settings.privacy.erasure_log)):
        return
    # A backup from before an erasure holds what was erased: erase it again.
    try:
        click.echo(reapply(settings, settings.retention.archive_dir))
    except SchemaVersionError as exc:
        raise click.ClickException(
            f"restored, but the logged erasures are not applied yet: {exc}; then run "
            "`meterflow privacy reapply`"
        ) from None
