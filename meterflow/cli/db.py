"""`meterflow db`: schema upgrades and SQLite upkeep."""

from __future__ import annotations

from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, db_option, settings_for
from meterflow.settings import Settings
from storage import (
    SCHEMA_VERSION,
    backend_for_url,
    maintenance,
    open_engine,
    upgrade,
)


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@config_option
@db_option
def db_upgrade(config_file: Path | None, db: str | None) -> None:
    """Bring the database's schema to the version this meterflow needs."""
    settings = settings_for(config_file, **{"storage.url": db})
    applied = complete(_upgrade(settings))
    if applied:
        click.echo(f"applied schema versions {', '.join(map(str, applied))}")
    click.echo(f"schema is at version {SCHEMA_VERSION}")


@db.command("check")
@config_option
@db_option
def db_check(config_file: Path | None, db: str | None) -> None:
    """SQLite: integrity check and counts (safe while the daemon runs)."""
    settings = settings_for(config_file, **{"storage.url": db})
    report = maintenance.check(settings.storage.url)
    click.echo(f"integrity: {'ok' if report.ok else '; '.join(report.integrity)}")
    click.echo(
        f"size {report.size_bytes / 2**20:.1f} MiB, {report.partitions} partitions, "
        f"{report.readings} readings, {report.devices} devices, "
        f"{report.dead_letters} dead letters"
    )
    if not report.ok:
        raise click.ClickException("the database failed its integrity check")


@db.command("optimize")
@config_option
@db_option
def db_optimize(config_file: Path | None, db: str | None) -> None:
    """SQLite: ANALYZE, optimize, incremental vacuum, checkpoint (safe while the daemon runs)."""
    settings = settings_for(config_file, **{"storage.url": db})
    report = maintenance.optimize(settings.storage.url)
    click.echo(f"optimized; {report.freed_pages} free pages returned to the file system")
    if not report.incremental_vacuum and report.free_pages_left:
        click.echo(
            f"{report.free_pages_left} free pages remain: this database predates incremental "
            "vacuum; run VACUUM with the daemon stopped to reclaim them"
        )


async def _upgrade(settings: Settings) -> list[int]:
    url = settings.storage.url
    engine = open_engine(url, settings.storage.sqlite)
    try:
        async with engine.connect() as conn:
            return await upgrade(conn, backend_for_url(url))
    finally:
        await engine.dispose()
