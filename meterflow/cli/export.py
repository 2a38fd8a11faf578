"""`meterflow export`: months of readings as Parquet or CSV files, one per month."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import (
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.settings import Settings
from partitions import Month
from storage.export import ExportFormat, count_rows, export_month
from storage.pseudonyms import Pseudonyms


@click.command()
@config_option
@db_option
@click.option("--from", "first", required=True, type=Month.parse, help="First month, YYYY-MM.")
@click.option("--to", "last", required=True, type=Month.parse, help="Last month, YYYY-MM.")
@click.option("--device", "device_id", help="Only this device's readings.")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Replace device and user ids by keyed hashes ([privacy] pseudonym_key) and leave "
    "metadata out.",
)
@click.option(
    "--out",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the files (energy_data_YYYY_MM.parquet|csv).",
)
def export(
    config_file: Path | None,
    db: str | None,
    first: Month,
    last: Month,
    device_id: str | None,
    export_format: ExportFormat,
    pseudonymize: bool,  # noqa: FBT001
    directory: Path,
) -> None:
    """Export readings month by month, streamed: memory stays flat for any size."""
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    settings = settings_for(config_file, **{"storage.url": db})
    pseudonyms = None
    if pseudonymize:
        key = settings.privacy.pseudonym_key
        if key is None:
            raise click.UsageError(
                "--pseudonymize needs a key of at least 16 characters: set "
                "METERFLOW_PRIVACY__PSEUDONYM_KEY (or [privacy] pseudonym_key); keep it apart "
                "from the exports, and the same for exports that must match"
            )
        pseudonyms = Pseudonyms(key)
    directory.mkdir(parents=True, exist_ok=True)
    made, total = complete(
        _export(settings, first, last, device_id, export_format, directory, pseudonyms)
    )
    for path in made:
        click.echo(str(path))
    if not made:
        click.echo(f"no partitions between {first} and {last}")
    target = f"{first}..{last}" + (f" device {device_id}" if device_id else "")
    audited(settings, target + (" pseudonymized" if pseudonymize else ""), total)


async def _export(
    settings: Settings,
    first: Month,
    last: Month,
    device_id: str | None,
    export_format: ExportFormat,
    directory: Path,
    pseudonyms: Pseudonyms | None,
) -> tuple[list[Path], int]:
    """The files written, and how many readings they hold."""
    async with open_database(settings) as database:
        conn = database.conn
        months = sorted(m for m in database.backend.partitions.months if first <= m <= last)
        async with conn.begin():
            total = sum([await count_rows(conn, m, device_id) for m in months])
            with click.progressbar(length=total, label="readings", file=sys.stderr) as bar:
                made = [
                    await export_month(
                        conn, month, directory, export_format,
                        device_id=device_id, progress=bar.update, pseudonyms=pseudonyms,
                    )
                    for month in months
                ]  # fmt: skip
                return made, total
