"""`meterflow db encrypt` and `db decrypt`: a SQLite database and its archived months
converted to encryption at rest with `storage.encryption_key`, or back."""

from __future__ import annotations

from pathlib import Path

import click

from meterflow.cli.common import archive_dir_option, config_option, db_option, settings_for
from meterflow.settings import Settings
from storage.cipher import ENVIRONMENT_KEY
from storage.encrypting import Converted, convert
from storage.engine import sqlite_file


@click.command("encrypt")
@config_option
@db_option
@archive_dir_option
def db_encrypt(config_file: Path | None, db: str | None, archive_dir: Path | None) -> None:
    """SQLite: encrypt the database and its archived months with storage.encryption_key
    (stop the daemon first). Backups made before stay as they were."""
    settings = settings_for(config_file, **{"storage.url": db})
    key = _required_key(settings, "the passphrase to encrypt with")
    done = _convert(settings, archive_dir, None, key)
    click.echo(f"{_summary(done)} encrypted; without the key they cannot be read: keep it safe")


@click.command("decrypt")
@config_option
@db_option
@archive_dir_option
def db_decrypt(config_file: Path | None, db: str | None, archive_dir: Path | None) -> None:
    """SQLite: store the database and its archived months unencrypted again (stop the
    daemon first), then unset storage.encryption_key."""
    settings = settings_for(config_file, **{"storage.url": db})
    key = _required_key(settings, "the passphrase they are encrypted with")
    done = _convert(settings, archive_dir, key, None)
    click.echo(f"{_summary(done)} decrypted; now unset {ENVIRONMENT_KEY}")


def _required_key(settings: Settings, what: str) -> str:
    key = settings.storage.key
    if key is None:
        raise click.ClickException(f"set {ENVIRONMENT_KEY} (or storage.encryption_key) to {what}")
    return key


def _convert(
    settings: Settings, archive_dir: Path | None, source: str | None, target: str | None
) -> Converted:
    database = sqlite_file(settings.storage.url, "encryption at rest by meterflow")
    return convert(database, archive_dir or settings.retention.archive_dir, source, target)


def _summary(done: Converted) -> str:
    files = len(done.rewritten) + len(done.already)
    months = files - 1
    said = f"the database and {months} archived month{'s' * (months != 1)}"
    if done.already:
        said += f" ({len(done.already)} already were)"
    return said
