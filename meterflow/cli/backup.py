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
from storage.sealed import age_recipients, opened, seal


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
@click.option("--encrypt-to", "recipients", multiple=True, metavar="AGE_PUBLIC_KEY",
              help="Encrypt the backup to this age key (age1...); repeatable; also "
              "backup.recipients.")  # fmt: skip
def backup(
    config_file: Path | None,
    db: str | None,
    directory: Path,
    keep: int,
    recipients: tuple[str, ...],
) -> None:
    """Back up the database: SQLite online and gzipped, PostgreSQL with pg_dump; encrypted
    with age to the recipients given.

    Safe while the daemon writes: the copy is one consistent state.
    """
    settings = settings_for(config_file, **{"storage.url": db})
    url = settings.storage.url
    keys = age_recipients([*settings.backup.recipients, *recipients])
    made = backend_for_url(url).backup(url, directory, keep, key=settings.storage.key)
    if keys:
        made = seal(made, keys, keep)
    click.echo(f"backed up to {made}")


@click.command()
@config_option
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database.")
@click.option("--identity", "identity_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The age identity that opens an encrypted backup (also "
              "backup.identity_file).")  # fmt: skip
def restore(
    config_file: Path | None,
    db: str | None,
    file: Path,
    force: bool,  # noqa: FBT001
    identity_file: Path | None,
) -> None:
    """Replace the database with a backup (decrypting an encrypted one); refused while a
    daemon uses the database."""
    settings = settings_for(config_file, **{"storage.url": db})
    url = settings.storage.url
    with opened(file, identity_file or settings.backup.identity_file) as plain:
        where = backend_for_url(url).restore(plain, url, force=force, key=settings.storage.key)
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
