"""`meterflow costs`: the rollups' cost and carbon."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.cli.local_time import local_days_options, zone_for, zone_option
from meterflow.settings import Settings
from storage.energy import first_instant
from storage.owners import BEGINNING, END
from storage.prices import Repriced, recompute, record_rates


@click.group()
def costs() -> None:
    """What energy cost, and its carbon."""


@costs.command("recompute")
@config_option
@db_option
@local_days_options(first="the first stored", last="everything after --from")
@zone_option
def costs_recompute(
    config_file: Path | None,
    db: str | None,
    first: datetime | None,
    last: datetime | None,
    zone_name: str | None,
) -> None:
    """Price the stored quarter hours again at the configured tariffs and carbon (after
    they changed), and the hours, days and months that hold them."""
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name)
    start = BEGINNING if first is None else first_instant(first.date(), zone)
    end = END if last is None else first_instant(last.date() + timedelta(days=1), zone)
    if start >= end:
        raise click.UsageError("--from is after --to")
    done = complete(_recompute(settings, start, end))
    span = "" if first is None and last is None else f" from {start.isoformat()}"
    if last is not None:
        span += f" to {end.isoformat()}"
    click.echo(f"priced {done.quarter_hours} quarter hours and {done.readings} readings{span}")


async def _recompute(settings: Settings, start: datetime, end: datetime) -> Repriced:
    async with open_database(settings) as database:
        await record_rates(database.conn, settings.prices)
        return await recompute(database.conn, database.backend, start, end)
