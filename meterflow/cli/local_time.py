"""What the commands that show energy over local time share: `--tz`, `--from`/`--to` as
local days, and energy per local bucket (storage/energy.py) of devices or a user's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfo

import click
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from meterflow.cli.common import open_database
from meterflow.settings import Settings
from storage.analytics import owned
from storage.bill import HomeBucket, home_buckets, priced_home
from storage.energy import EnergyBucket, Every, energy, first_instant, local_span
from storage.owners import Ownership, whole
from storage.peaks import MonthlyPeak, monthly_peaks
from storage.self_consumption import SelfConsumption, self_consumption
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


_DAY = click.DateTime(["%Y-%m-%d"])
F = TypeVar("F", bound=Callable[..., object])


def local_days_options(first: str = "6 days before --to", last: str = "today") -> Callable[[F], F]:
    """The options `--from` and `--to`, local days, saying what each defaults to."""

    def decorate(command: F) -> F:
        command = click.option(
            "--to", "last", type=_DAY, help=f"Last local day, included (default: {last})."
        )(command)
        return click.option(
            "--from", "first", type=_DAY, help=f"First local day (default: {first})."
        )(command)

    return decorate


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
    return await _answer(
        settings,
        devices,
        span,
        lambda conn, spans: energy(conn, owned=spans, every=every, zone=zone, start=start, end=end),
    )


async def home_energy_of(
    settings: Settings, user_id: str, every: Every, zone: tzinfo, span: tuple[datetime, datetime]
) -> list[HomeBucket]:
    """A user's home per local bucket over `span`: its flows, cost and carbon, and peak
    demand (storage/bill.py)."""
    start, end = span

    async def ask(conn: AsyncConnection, spans: list[Ownership]) -> list[HomeBucket]:
        home = await priced_home(conn, user_id, owned=spans, zone=zone, start=start, end=end)
        return home_buckets(home.quarters, every)

    return await _answer(settings, user_id, span, ask)


async def peaks_of(
    settings: Settings, devices: list[str] | str, zone: tzinfo, span: tuple[datetime, datetime]
) -> list[MonthlyPeak]:
    """Each local month's peak demand over `span` (storage/peaks.py) of `devices`, as for
    `energy_of`."""
    start, end = span
    return await _answer(
        settings,
        devices,
        span,
        lambda conn, spans: monthly_peaks(
            conn, owned=spans, zone=zone, start=start, end=end, home=isinstance(devices, str)
        ),
    )


async def self_consumption_of(
    settings: Settings, user_id: str, zone: tzinfo, span: tuple[datetime, datetime]
) -> SelfConsumption:
    """A user's self-consumption over `span` (storage/self_consumption.py)."""
    return await _answer(
        settings,
        user_id,
        span,
        lambda conn, spans: self_consumption(conn, spans, zone, *span),
    )


T = TypeVar("T")


async def _answer(
    settings: Settings,
    devices: list[str] | str,
    span: tuple[datetime, datetime],
    ask: Callable[[AsyncConnection, list[Ownership]], Awaitable[T]],
) -> T:
    """`ask` of the spans of `span` in which each device counts (`_ownership`), in one
    read transaction of the configured database."""
    async with (
        open_database(settings) as database,
        database.conn.begin(),
    ):
        conn = database.conn
        return await ask(conn, await _ownership(conn, devices, *span))


async def _ownership(
    conn: AsyncConnection, devices: list[str] | str, start: datetime, end: datetime
) -> list[Ownership]:
    """Device ids whole, or a user's id as the spans they owned each device in."""
    if isinstance(devices, str):
        return await owned(conn, devices, start, end)
    return whole(devices, start, end)


def local_months(months: int, zone: tzinfo) -> tuple[datetime, datetime]:
    """The last `months` local months, the current one last, as UTC instants."""
    first = datetime.now(zone).date().replace(day=1)
    for _ in range(months - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    following = (datetime.now(zone).date().replace(day=28) + timedelta(days=4)).replace(day=1)
    return first_instant(first, zone), first_instant(following, zone)
