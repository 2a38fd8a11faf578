"""`meterflow migrate`: copy a database into another, then verify the copy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, settings_for
from storage import SQLiteOptions, open_engine
from storage.transfer import CopyReport, Side, copy_database, count_readings


@click.command()
@config_option
@click.option(
    "--from",
    "source_url",
    required=True,
    help="Database to copy, e.g. sqlite:///data/meterflow.db.",
)
@click.option(
    "--to", "target_url", required=True, help="Database to copy into, e.g. postgresql+asyncpg://..."
)
def migrate(config_file: Path | None, source_url: str, target_url: str) -> None:
    """Copy devices, readings, rollups and dead letters to another database, then verify.

    Safe to run again after an interruption: it continues where it stopped. Stop the
    daemons writing to the source first. A SQLite database encrypted at rest is opened
    with storage.encryption_key.
    """
    options = settings_for(config_file).storage.sqlite
    report = complete(_migrate(source_url, target_url, options))
    click.echo(
        f"copied {report.devices} devices, {report.readings} readings, "
        f"{report.dead_letters} new dead letters"
    )
    for check in report.months:
        state = "ok" if check.matches else "MISMATCH"
        click.echo(f"{check.month}: {check.source_rows} -> {check.target_rows} rows, {state}")
    for rollup in report.rollups:
        state = "ok" if rollup.matches else "MISMATCH"
        click.echo(f"{rollup.table}: {rollup.source_rows} -> {rollup.target_rows} rows, {state}")
    for difference in report.differences:
        click.echo(f"  {difference}")
    if report.differences:
        raise click.ClickException(
            f"verification failed: {len(report.differences)} rollup rows differ from the "
            "readings (the source's rollups were off: `meterflow db verify` on it, then "
            "`meterflow db rebuild-rollups` and migrate again)"
        )
    if not report.verified:
        raise click.ClickException("verification failed: the copy differs from the source")
    click.echo(
        "verified: every month has equal counts and checksums, every rollup equals the "
        "source's, and the rollups add up to the readings"
    )


async def _migrate(source_url: str, target_url: str, options: SQLiteOptions) -> CopyReport:
    source = Side(open_engine(source_url, options), source_url)
    target = Side(open_engine(target_url, options), target_url)
    try:
        total = await count_readings(source)
        with click.progressbar(length=total, label="readings", file=sys.stderr) as bar:
            return await copy_database(source, target, progress=bar.update)
    finally:
        await source.engine.dispose()
        await target.engine.dispose()
