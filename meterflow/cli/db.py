"""`meterflow db`: schema upgrades, SQLite upkeep, and rollups checked against readings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from meterflow.cli.common import (
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.cli.encryption import db_decrypt, db_encrypt
from meterflow.settings import Settings
from partitions import Month
from partitions.postgres_store import ARCHIVE_SUFFIX as POSTGRES_ARCHIVE_SUFFIX
from partitions.sqlite_store import ARCHIVE_SUFFIX as SQLITE_ARCHIVE_SUFFIX
from partitions.store import archived_months
from storage import (
    SCHEMA_VERSION,
    backend_for_url,
    maintenance,
    open_engine,
    upgrade,
)
from storage.backend import Dialect
from storage.database import connect
from storage.errors import QueryError
from storage.prices import price_differences
from storage.verify import (
    Difference,
    Verification,
    month_differences,
    rebuild_month,
    rollup_months,
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
    report = maintenance.check(settings.storage.url, key=settings.storage.key)
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
    report = maintenance.optimize(settings.storage.url, key=settings.storage.key)
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


# How many differences of one month are printed before the rest are counted.
SHOWN_PER_MONTH = 20
from_month = click.option(
    "--from", "first", type=Month.parse, metavar="YYYY-MM", help="First month."
)
to_month = click.option("--to", "last", type=Month.parse, metavar="YYYY-MM", help="Last month.")


@db.command("verify")
@config_option
@db_option
@from_month
@to_month
@click.option(
    "--archive-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where archived months are (retention.archive_dir).",
)
def db_verify(
    config_file: Path | None,
    db: str | None,
    first: Month | None,
    last: Month | None,
    archive_dir: Path | None,
) -> None:
    """Recompute every rollup from the raw readings; print each difference, exit 1 on any.

    Safe while the daemon writes. A month that retention archived is checked against its
    archive file where the database can read one (SQLite); a month dropped, or archived
    as CSV (PostgreSQL), keeps its rollup rows, which are listed and not checked.
    """
    settings = settings_for(config_file, **{"storage.url": db})
    directory = archive_dir or settings.retention.archive_dir
    report = complete(_verify(settings, first, last, directory))
    for month, differences in report.months:
        where = str(month)
        if month in report.archives:
            where = f"{month} (archived in {report.archives[month].name})"
        if not differences:
            click.echo(f"{where}: rollups match the readings")
        _echo(f"{where}: {len(differences)} rollup rows differ from the readings", differences)
    for month in report.without_readings:
        click.echo(
            f"{month}: no readings to read (dropped, or archived where this database cannot "
            "query it); rollup rows kept, not checked"
        )
    for month, off in report.prices:
        _echo(f"{month}: {len(off)} rows' cost or carbon differ from the rates", off)
    problems = []
    if report.differences:
        problems.append(
            f"{report.differences} rollup rows differ from the readings: "
            "`meterflow db rebuild-rollups` recomputes them"
        )
    if report.price_differences:
        problems.append(
            f"{report.price_differences} rows' cost or carbon differ from the rates: "
            "`meterflow costs recompute` prices them again"
        )
    if problems:
        raise click.ClickException("; ".join(problems))
    if report.prices:
        click.echo("cost and carbon match the rates")


def _echo(heading: str, differences: Sequence[object]) -> None:
    """A month's differences, the first SHOWN_PER_MONTH of them; nothing if none."""
    if not differences:
        return
    click.echo(heading)
    for difference in differences[:SHOWN_PER_MONTH]:
        click.echo(f"  {difference}")
    if len(differences) > SHOWN_PER_MONTH:
        click.echo(f"  ... and {len(differences) - SHOWN_PER_MONTH} more")


@db.command("rebuild-rollups")
@config_option
@db_option
@from_month
@to_month
def db_rebuild_rollups(
    config_file: Path | None, db: str | None, first: Month | None, last: Month | None
) -> None:
    """Recompute the rollups of live months from their readings (safe while the daemon runs)."""
    settings = settings_for(config_file, **{"storage.url": db})
    for month in complete(_rebuild(settings, first, last)):
        click.echo(f"{month}: rollups rebuilt from its readings")


def _chosen(months: Iterable[Month], first: Month | None, last: Month | None) -> list[Month]:
    return sorted(
        m for m in months if (first is None or m >= first) and (last is None or m <= last)
    )


async def _verify(
    settings: Settings, first: Month | None, last: Month | None, archive_dir: Path
) -> Verification:
    url = settings.storage.url
    async with connect(url, settings.storage.sqlite) as database:
        backend = database.backend
        live = backend.partitions.months
        report = Verification()
        for month in _chosen(live, first, last):
            async with database.conn.begin():
                report.months.append(
                    (month, await month_differences(database.conn, backend, month))
                )
        async with database.conn.begin():
            summed = await rollup_months(database.conn)
        for month in _chosen(summed, first, last):
            async with database.conn.begin():
                off = await price_differences(database.conn, backend, month.start, month.end)
            report.prices.append((month, off))
    archives = dict(archived_months(archive_dir, SQLITE_ARCHIVE_SUFFIX))
    archives.update(archived_months(archive_dir, POSTGRES_ARCHIVE_SUFFIX))
    for month in _chosen(summed - live, first, last):
        archive = archives.get(month)
        found = None if archive is None else _archived(backend, settings, archive, month)
        if archive is None or found is None:
            report.without_readings.append(month)
        else:
            report.months.append((month, found))
            report.archives[month] = archive
    return report


def _archived(
    backend: Dialect, settings: Settings, archive: Path, month: Month
) -> list[Difference] | None:
    """An archived month's differences; None where the database cannot read its archive."""
    storage = settings.storage
    try:
        return backend.archived_differences(storage.url, archive, month, key=storage.key)
    except QueryError:
        return None


async def _rebuild(settings: Settings, first: Month | None, last: Month | None) -> list[Month]:
    async with open_database(settings) as database:
        months = _chosen(database.backend.partitions.months, first, last)
        for month in months:
            async with database.conn.begin():
                await rebuild_month(database.conn, database.backend, month)
        return months


db.add_command(db_encrypt)
db.add_command(db_decrypt)
