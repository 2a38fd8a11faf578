"""What the commands that show energy over local time share: `--tz`, `--from`/`--to` as
local days, and energy per local bucket (storage/energy.py) of devices or a user's."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import click
from pydantic import TypeAdapter, ValidationError

from meterflow.cli.common import open_database
from meterflow.settings import Settings
from storage.analytics import owned
from storage.energy import EnergyBucket, Every, energy, local_span
from storage.owners import whole
from storage.settings import TimeZoneName


def _zone(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return TypeAdapter(TimeZoneName).validate_python(value)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


zone_option = click.option(
    "--tz",
    "zone_name",
    callback=_zone,
    help="IANA time zone of the days (default: the user's, then [analytics] timezone).",
)


def zone_for(settings: Settings, zone_name: str | None, user_id: str | None = None) -> ZoneInfo:
    """--tz, else the user's zone, else everyone's."""
    return ZoneInfo(zone_name) if zone_name else settings.analytics.zone(user_id)


def local_days(
    first: datetime | None, last: datetime | None, zone: tzinfo, *, whole_months: bool = False
) -> tuple[datetime, datetime]:
    """--from and --to as UTC instants: the first local day's first instant, and the last's
    end; by default the week up to today."""
    last_day = last.date() if last else datetime.now(zone).date()
    first_day = first.date() if first else last_day - timedelta(days=6)
    if first_day > last_day:
        raise click.UsageError(f"--from {first_day} is after --to {last_day}")
    return local_span(first_day.replace(day=1) if whole_months else first_day, last_day, zone)


async def energy_of(
    settings: Settings,
    devices: list[str] | str,
    every: Every,
    zone: tzinfo,
    span: tuple[datetime, datetime],
) -> list[EnergyBucket]:
    """Energy per local bucket over `span` of `devices`: ids, or a user's id for the
    devices they owned, while they owned them."""
    start, end = span
    async with (
        open_database(settings) as database,
        database.conn.begin(),
    ):
        conn = database.conn
        spans = (
            await owned(conn, devices, start, end)
            if isinstance(devices, str)
            else whole(devices, start, end)
        )
        return await energy(conn, owned=spans, every=every, zone=zone, start=start, end=end)
