"""`meterflow query`: read-only questions to the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from meterflow.cli.common import complete, config_option, db_option, settings_for
from meterflow.cli.output import Cell, OutputFormat, format_option, render
from storage import QueryError, iot_devices
from storage.analytics import Balance, DeviceDay, balance, device_days
from storage.backend import backend_for_url
from storage.database import connect
from storage.energy import EVERY, EnergyBucket, Every, energy, local_span
from storage.readonly import archives_in
from storage.settings import TimeZoneName


@click.group()
def query() -> None:
    """Ask the database questions (read-only)."""


@query.command("sql")
@config_option
@db_option
@click.argument("statement")
@click.option(
    "--include-archive",
    is_flag=True,
    help="SQLite: energy_data also covers the months archived under --archive-dir.",
)
@click.option(
    "--archive-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where archived months are (default: retention.archive_dir).",
)
@format_option
def query_sql(
    config_file: Path | None,
    db: str | None,
    statement: str,
    include_archive: bool,  # noqa: FBT001
    archive_dir: Path | None,
    output_format: OutputFormat,
) -> None:
    """Run one read-only SQL statement; writes, ATTACH and DETACH are refused."""
    settings = settings_for(config_file, **{"storage.url": db})
    url = settings.storage.url
    archives = archives_in(archive_dir or settings.retention.archive_dir)
    backend = backend_for_url(url)
    columns, records = backend.read_only_query(
        url, statement, archives if include_archive else None
    )
    click.echo(render(columns, records, output_format))


@query.command("devices-daily")
@config_option
@db_option
@click.option("--device", "device_id", required=True, help="The device's id.")
@click.option(
    "--from",
    "start",
    type=click.DateTime(["%Y-%m-%d"]),
    help="First UTC day (default: 7 days ago).",
)
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]),
              help="Last UTC day, included (default: today).")  # fmt: skip
@format_option
def query_devices_daily(
    config_file: Path | None,
    db: str | None,
    device_id: str,
    start: datetime | None,
    end: datetime | None,
    output_format: OutputFormat,
) -> None:
    """One device's days: total energy, average and peak power, readings."""
    settings = settings_for(config_file, **{"storage.url": db})
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = end.replace(tzinfo=UTC) if end else today
    first = start.replace(tzinfo=UTC) if start else last - timedelta(days=6)

    async def ask() -> list[DeviceDay]:
        async with (
            connect(settings.storage.url, settings.storage.sqlite) as database,
            database.conn.begin(),
        ):
            return await device_days(database.conn, device_id, first, last + timedelta(days=1))

    days = complete(ask())
    headers = ("day", "energy_kwh", "average_power_kw", "peak_power_kw", "readings")
    rows: list[list[Cell]] = [
        [d.day.isoformat(), _round(d.energy_kwh), _round(d.average_power_kw),
         _round(d.peak_power_kw), d.readings]
        for d in days
    ]  # fmt: skip
    click.echo(render(headers, rows, output_format))


@query.command("balance")
@config_option
@db_option
@click.option("--user", "user_id", required=True, help="The owner (iot_devices.user_id).")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1))
@format_option
def query_balance(
    config_file: Path | None,
    db: str | None,
    user_id: str,
    days: int,
    output_format: OutputFormat,
) -> None:
    """A user's consumption, production and net (consumption - production) over N days."""
    settings = settings_for(config_file, **{"storage.url": db})
    since = datetime.now(UTC) - timedelta(days=days)

    async def ask() -> Balance:
        async with (
            connect(settings.storage.url, settings.storage.sqlite) as database,
            database.conn.begin(),
        ):
            return await balance(database.conn, user_id, since)

    result = complete(ask())
    headers = ("user_id", "days", "devices", "consumption_kwh", "production_kwh", "net_kwh")
    row: list[Cell] = [
        user_id, days, result.devices, _round(result.consumption_kwh),
        _round(result.production_kwh), _round(result.net_kwh),
    ]  # fmt: skip
    click.echo(render(headers, [row], output_format))


def _zone(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return TypeAdapter(TimeZoneName).validate_python(value)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


@query.command("energy")
@config_option
@db_option
@click.option("--device", "device_id", help="One device's energy.")
@click.option("--user", "user_id", help="The energy of every device the user owns.")
@click.option(
    "--every",
    type=click.Choice(EVERY),
    default="day",
    show_default=True,
    help="One row per local quarter hour, hour, day or month.",
)
@click.option(
    "--tz",
    "zone_name",
    callback=_zone,
    help="IANA time zone of the buckets (default: the user's, then [analytics] timezone).",
)
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]),
              help="First local day (default: 6 days before --to).")  # fmt: skip
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]),
              help="Last local day, included (default: today).")  # fmt: skip
@format_option
def query_energy(
    config_file: Path | None,
    db: str | None,
    device_id: str | None,
    user_id: str | None,
    every: Every,
    zone_name: str | None,
    first: datetime | None,
    last: datetime | None,
    output_format: OutputFormat,
) -> None:
    """Energy per local bucket: consumption and production kWh, peak power, readings.

    Each bucket is named by its first instant with its UTC offset; local days are exact
    on DST days (23 and 25 hours) and in half- and quarter-hour zones.
    """
    if (device_id is None) == (user_id is None):
        raise click.UsageError("give --device ID or --user ID")
    settings = settings_for(config_file, **{"storage.url": db})
    zone = ZoneInfo(zone_name) if zone_name else settings.analytics.zone(user_id)
    last_day = last.date() if last else datetime.now(zone).date()
    first_day = first.date() if first else last_day - timedelta(days=6)
    if first_day > last_day:
        raise click.UsageError(f"--from {first_day} is after --to {last_day}")
    start, end = local_span(_month_start(first_day, every), last_day, zone)

    async def ask() -> list[EnergyBucket]:
        async with (
            connect(settings.storage.url, settings.storage.sqlite) as database,
            database.conn.begin(),
        ):
            devices = [device_id] if device_id else await _owned(database.conn, user_id)
            return await energy(
                database.conn, device_ids=devices, every=every, zone=zone, start=start, end=end
            )

    buckets = complete(ask())
    headers = ("start", "consumption_kwh", "production_kwh", "peak_power_kw", "readings")
    rows: list[list[Cell]] = [
        [b.start.isoformat(), _round(b.consumption_kwh), _round(b.production_kwh),
         _round(b.peak_power_kw), b.readings]
        for b in buckets
    ]  # fmt: skip
    click.echo(render(headers, rows, output_format))


def _month_start(day: date, every: Every) -> date:
    """With --every month, --from's month is whole."""
    return day.replace(day=1) if every == "month" else day


async def _owned(conn: AsyncConnection, user_id: str | None) -> list[str]:
    devices = list(
        await conn.scalars(select(iot_devices.c.device_id).where(iot_devices.c.user_id == user_id))
    )
    if not devices:
        raise QueryError(
            f"no device belongs to user {user_id!r}: `meterflow devices list` shows the owners"
        )
    return devices


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
