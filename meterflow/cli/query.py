"""`meterflow query`: read-only questions to the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click

from meterflow.cli.audit import audited
from meterflow.cli.common import (
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.cli.local_time import (
    energy_of,
    home_energy_of,
    local_days,
    local_days_options,
    local_months,
    peaks_of,
    self_consumption_of,
    zone_for,
    zone_option,
)
from meterflow.cli.output import Cell, OutputFormat, format_option, render
from storage.analytics import Balance, balance
from storage.backend import backend_for_url
from storage.energy import EVERY, Every
from storage.peaks import mean_peak
from storage.readonly import archives_in


@click.group()
def query() -> None:
    """Ask the database questions (they change no data; each is in the audit trail)."""


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
        url, statement, archives if include_archive else None, key=settings.storage.key
    )
    click.echo(render(columns, records, output_format))
    audited(settings, statement, len(records))


@query.command("energy")
@config_option
@db_option
@click.option("--device", "device_id", help="One device's energy.")
@click.option("--user", "user_id", help="The home of the devices the user owned, while owned.")
@click.option(
    "--every",
    type=click.Choice(EVERY),
    default="day",
    show_default=True,
    help="One row per local quarter hour, hour, day or month.",
)
@zone_option
@local_days_options()
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
    """Energy per local bucket: a device's consumption and production kWh, peak power,
    readings, and what it cost (feed-in credited) and its kg CO2 where tariffs and carbon
    are configured; or a user's home: what it used and produced, drew from the grid and
    fed in, its peak demand, cost and carbon.

    Each bucket is named by its first instant with its UTC offset; local days are exact
    on DST days (23 and 25 hours) and in half- and quarter-hour zones.
    """
    if (device_id is None) == (user_id is None):
        raise click.UsageError("give --device ID or --user ID")
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name, user_id)
    span = local_days(first, last, zone, whole_months=every == "month")
    rows: list[list[Cell]]
    if user_id is not None:
        homes = complete(home_energy_of(settings, user_id, every, zone, span))
        headers: tuple[str, ...] = (
            "start", "consumption_kwh", "production_kwh", "imported_kwh", "exported_kwh",
            "peak_demand_kw", "cost", "carbon_kg",
        )  # fmt: skip
        rows = [
            [h.start.isoformat(), _round(h.used_kwh), _round(h.produced_kwh),
             _round(h.imported_kwh), _round(h.exported_kwh), _round(h.peak_demand_kw),
             _round(h.cost), _round(h.carbon_kg)]
            for h in homes
        ]  # fmt: skip
    else:
        buckets = complete(energy_of(settings, [str(device_id)], every, zone, span))
        headers = ("start", "consumption_kwh", "production_kwh", "peak_power_kw", "readings",
                   "cost", "carbon_kg")  # fmt: skip
        rows = [
            [b.start.isoformat(), _round(b.consumption_kwh), _round(b.production_kwh),
             _round(b.peak_power_kw), b.readings, _round(b.cost), _round(b.carbon_kg)]
            for b in buckets
        ]  # fmt: skip
    click.echo(render(headers, rows, output_format))
    audited(settings, _whose(user_id, device_id), len(rows))


@query.command("devices-daily")
@config_option
@db_option
@click.option("--device", "device_id", required=True, help="The device's id.")
@local_days_options()
@zone_option
@format_option
def query_devices_daily(
    config_file: Path | None,
    db: str | None,
    device_id: str,
    first: datetime | None,
    last: datetime | None,
    zone_name: str | None,
    output_format: OutputFormat,
) -> None:
    """One device's local days: total energy, average and peak power, readings."""
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name)
    span = local_days(first, last, zone)
    days = complete(energy_of(settings, [device_id], "day", zone, span))
    headers = ("day", "energy_kwh", "average_power_kw", "peak_power_kw", "readings")
    rows: list[list[Cell]] = [
        [d.start.date().isoformat(), _round(d.energy_kwh), _round(d.average_power_kw),
         _round(d.peak_power_kw), d.readings]
        for d in days
    ]  # fmt: skip
    click.echo(render(headers, rows, output_format))
    audited(settings, f"device {device_id}", len(rows))


@query.command("balance")
@config_option
@db_option
@click.option("--user", "user_id", required=True, help="The owner (iot_devices.user_id).")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1))
@zone_option
@format_option
def query_balance(
    config_file: Path | None,
    db: str | None,
    user_id: str,
    days: int,
    zone_name: str | None,
    output_format: OutputFormat,
) -> None:
    """A user's home over the last N local days, today included: what it used and
    produced, and its net exchange with the grid (drawn less fed in)."""
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name, user_id)
    today = datetime.now(zone).date()

    async def ask() -> Balance:
        async with (
            open_database(settings) as database,
            database.conn.begin(),
        ):
            first = today - timedelta(days=days - 1)
            return await balance(database.conn, user_id, first, today, zone)

    result = complete(ask())
    headers = ("user_id", "days", "devices", "consumption_kwh", "production_kwh", "net_kwh")
    row: list[Cell] = [
        user_id, days, result.devices, _round(result.consumption_kwh),
        _round(result.production_kwh), _round(result.net_kwh),
    ]  # fmt: skip
    click.echo(render(headers, [row], output_format))
    audited(settings, f"user {user_id}", 1)


@query.command("peaks")
@config_option
@db_option
@click.option("--device", "device_id", help="One device's peaks.")
@click.option("--user", "user_id", help="The peaks of the devices a user owned, together.")
@click.option("--months", default=12, show_default=True, type=click.IntRange(min=1),
              help="Local months, the current one last.")  # fmt: skip
@zone_option
@format_option
def query_peaks(
    config_file: Path | None,
    db: str | None,
    device_id: str | None,
    user_id: str | None,
    months: int,
    zone_name: str | None,
    output_format: OutputFormat,
) -> None:
    """Peak demand: each local month's highest 15-minute average power drawn (kW) and the
    quarter hour it began, then the mean of those peaks, as capacity tariffs bill it."""
    if (device_id is None) == (user_id is None):
        raise click.UsageError("give --device ID or --user ID")
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name, user_id)
    devices = [device_id] if device_id else str(user_id)
    peaks = complete(peaks_of(settings, devices, zone, local_months(months, zone)))
    headers = ("month", "peak_kw", "at")
    rows: list[list[Cell]] = [
        [p.month.strftime("%Y-%m"), _round(p.peak_kw), p.at.isoformat()] for p in peaks
    ]
    rows.append([f"mean of {len(peaks)}", _round(mean_peak(peaks)), None])
    click.echo(render(headers, rows, output_format))
    audited(settings, _whose(user_id, device_id), len(peaks))


@query.command("self-consumption")
@config_option
@db_option
@click.option("--user", "user_id", required=True, help="The owner of the home's devices.")
@local_days_options()
@zone_option
@format_option
def query_self_consumption(
    config_file: Path | None,
    db: str | None,
    user_id: str,
    first: datetime | None,
    last: datetime | None,
    zone_name: str | None,
    output_format: OutputFormat,
) -> None:
    """A home's imported, exported, produced, self-consumed and used energy over local days,
    with its self-consumption and self-sufficiency ratios (formulas in the README)."""
    settings = settings_for(config_file, **{"storage.url": db})
    zone = zone_for(settings, zone_name, user_id)
    found = complete(self_consumption_of(settings, user_id, zone, local_days(first, last, zone)))
    headers = (
        "user_id", "imported_kwh", "exported_kwh", "produced_kwh", "self_consumed_kwh",
        "used_kwh", "self_consumption_ratio", "self_sufficiency_ratio", "grid_metered",
    )  # fmt: skip
    row: list[Cell] = [
        user_id, _round(found.imported_kwh), _round(found.exported_kwh),
        _round(found.produced_kwh), _round(found.self_consumed_kwh), _round(found.used_kwh),
        _round(found.self_consumption_ratio), _round(found.self_sufficiency_ratio),
        "yes" if found.metered else "no (netted per quarter hour)",
    ]  # fmt: skip
    click.echo(render(headers, [row], output_format))
    audited(settings, f"user {user_id}", 1)


def _whose(user_id: str | None, device_id: str | None) -> str:
    """What a question was about, for the audit trail: a user's home or a device."""
    return f"user {user_id}" if user_id else f"device {device_id}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
