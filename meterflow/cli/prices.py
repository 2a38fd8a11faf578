"""`meterflow prices`: a dynamic tariff's prices."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.settings import Settings
from storage.dynamic_prices import DynamicPrice, read_prices, store_prices
from storage.prices import Repriced, recompute, record_rates


@click.group()
def prices() -> None:
    """Dynamic prices (day-ahead markets) of tariffs marked dynamic."""


@prices.command("import")
@config_option
@db_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--tariff", "name", required=True, help="The dynamic tariff they belong to.")
@click.option(
    "--resolution",
    type=click.Choice(["15", "60"]),
    help="Minutes each price holds, for a file without an end column.",
)
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
    step = None if resolution is None else timedelta(minutes=int(resolution))
    found = read_prices(file, step)
    done = complete(_import(settings, name, found))
    click.echo(
        f"imported {len(found)} prices of {name} from {found[0].start.isoformat()} to "
        f"{found[-1].until.isoformat()}; priced {done.quarter_hours} quarter hours"
    )


async def _import(settings: Settings, name: str, found: list[DynamicPrice]) -> Repriced:
    async with open_database(settings) as database:
        conn = database.conn
        async with conn.begin():
            await store_prices(conn, name, found)
        await record_rates(conn, settings.prices)
        return await recompute(conn, database.backend, found[0].start, found[-1].until)
