"""`meterflow prices import` and `meterflow carbon import`: time series of a dynamic
tariff's prices and a dynamic grid zone's carbon intensity (storage/series.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.settings import Settings
from storage.prices import Repriced, recompute, record_rates
from storage.series import SeriesKind, Span, read_series, store_series

file_argument = click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
resolution_option = click.option(
    "--resolution",
    type=click.Choice(["15", "60"]),
    help="Minutes each value holds, for a file without an end column.",
)


@click.group()
def prices() -> None:
    """Dynamic prices (day-ahead markets) of tariffs marked dynamic."""


@prices.command("import")
@config_option
@db_option
@file_argument
@click.option("--tariff", "name", required=True, help="The dynamic tariff they belong to.")
@resolution_option
def prices_import(
    config_file: Path | None, db: str | None, file: Path, name: str, resolution: str | None
) -> None:
    """Import a CSV of prices (start,end,price or start,price) for a dynamic tariff; the
    span it covers replaces what was imported for it before, and is priced again."""
    settings = settings_for(config_file, **{"storage.url": db})
    tariff = next((t for t in settings.tariffs if t.name == name), None)
    if tariff is None:
        known = ", ".join(t.name for t in settings.tariffs) or "none"
        raise click.UsageError(f"no tariff named {name!r} in the settings (tariffs: {known})")
    if not tariff.dynamic:
        raise click.UsageError(f"tariff {name!r} is not dynamic: set dynamic = true for it")
    _import(settings, "price", name, file, resolution, "prices")


@click.group()
def carbon() -> None:
    """Grid carbon intensity of zones marked dynamic."""


@carbon.command("import")
@config_option
@db_option
@file_argument
@click.option("--zone", required=True, help="The grid zone, one of [carbon] dynamic_zones.")
@resolution_option
def carbon_import(
    config_file: Path | None, db: str | None, file: Path, zone: str, resolution: str | None
) -> None:
    """Import a CSV of intensities (start,end,g_per_kwh or start,g_per_kwh) for a dynamic
    zone; the span it covers replaces what was imported for it before, and is priced again."""
    settings = settings_for(config_file, **{"storage.url": db})
    if zone not in settings.carbon.dynamic_zones:
        known = ", ".join(settings.carbon.dynamic_zones) or "none"
        raise click.UsageError(
            f"zone {zone!r} is not one of [carbon] dynamic_zones (those: {known})"
        )
    _import(settings, "carbon", zone, file, resolution, "intensities")


def _import(
    settings: Settings,
    kind: SeriesKind,
    key: str,
    file: Path,
    resolution: str | None,
    what: str,
) -> None:
    step = None if resolution is None else timedelta(minutes=int(resolution))
    found = read_series(file, kind, step)
    done = complete(_store(settings, kind, key, found))
    click.echo(
        f"imported {len(found)} {what} of {key} from {found[0].start.isoformat()} to "
        f"{found[-1].until.isoformat()}; priced {done.quarter_hours} quarter hours and "
        f"{done.readings} readings"
    )


async def _store(settings: Settings, kind: SeriesKind, key: str, found: list[Span]) -> Repriced:
    """Store the series, write the rates it changes, and price the span it covers."""
    async with open_database(settings) as database:
        conn = database.conn
        async with conn.begin():
            await store_series(conn, kind, key, found)
        await record_rates(conn, settings.prices)
        return await recompute(conn, database.backend, found[0].start, found[-1].until)
