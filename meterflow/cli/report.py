"""`meterflow report`: a home's month on one page (meterflow/report/)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.cli.local_time import zone_for, zone_option
from meterflow.report.facts import MonthFacts, month_facts
from meterflow.report.page import render
from meterflow.settings import Settings


@click.command()
@config_option
@db_option
@click.option("--user", "user_id", required=True, help="The owner of the home's devices.")
@click.option("--month", type=click.DateTime(["%Y-%m"]),
              help="The local month, YYYY-MM (default: the last whole month).")  # fmt: skip
@zone_option
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML file to write.",
)  # fmt: skip
def report(
    config_file: Path | None,
    db: str | None,
    user_id: str,
    month: datetime | None,
    zone_name: str | None,
    out: Path,
) -> None:
    """A month of a home as one HTML page: use, production, the grid, cost by tariff period,
    carbon, peak demand, self-consumption, a chart of the days and a heat map of the quarter
    hours, in the user's time zone."""
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name, user_id)
    first = month.date() if month else _last_whole_month(zone)
    facts = complete(_facts(settings, user_id, first, zone))
    out.write_text(render(facts), encoding="utf-8")
    costs = ", ".join(f"{cost:,.2f} {currency}" for currency, cost in facts.costs.items())
    audited(settings, f"user {user_id} {first:%Y-%m}", len(facts.days))
    click.echo(
        f"wrote {out}: {user_id} in {first:%Y-%m}, {facts.totals.used_kwh:,.2f} kWh used"
        + (f", {costs}" if costs else "")
    )


def _last_whole_month(zone: ZoneInfo) -> date:
    return (datetime.now(zone).date().replace(day=1) - timedelta(days=1)).replace(day=1)


async def _facts(settings: Settings, user_id: str, month: date, zone: ZoneInfo) -> MonthFacts:
    currencies = {tariff.name: tariff.currency for tariff in settings.tariffs}
    async with open_database(settings) as database, database.conn.begin():
        return await month_facts(database.conn, user_id, month, zone, currencies)
