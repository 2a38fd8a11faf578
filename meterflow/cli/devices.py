"""`meterflow devices`: the device registry, for operators."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import click

from ingest.decode.topics import device_id_problem
from meterflow.cli.audit import audited
from meterflow.cli.common import (
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.cli.output import Cell, OutputFormat, ago, format_option, render
from meterflow.settings import Settings
from storage import DeviceType, registry
from storage.counters import replace_meter
from storage.records import Role
from storage.registry import Device, DeviceStatus, Implausible, Registration

DEVICE_TYPES: tuple[DeviceType, ...] = get_args(DeviceType)
ROLES: tuple[Role, ...] = get_args(Role)
# The newest implausible readings `devices show` lists.
SHOWN_IMPLAUSIBLE = 20
STATUSES: tuple[DeviceStatus, ...] = get_args(DeviceStatus)
HEADERS = ("device_id", "type", "status", "last_seen", "battery_%", "user_id", "name", "location")


@click.group()
def devices() -> None:
    """The device registry: list, show, register, import, set status."""


@devices.command("list")
@config_option
@db_option
@click.option("--status", type=click.Choice(STATUSES), help="Only devices with this status.")
@click.option("--type", "device_type", type=click.Choice(DEVICE_TYPES), help="Only this type.")
@click.option("--user", "user_id", help="Only devices of this owner.")
@click.option(
    "--low-battery",
    is_flag=True,
    help="Only devices whose battery is below devices.low_battery_pct.",
)
@format_option
def devices_list(
    config_file: Path | None,
    db: str | None,
    status: DeviceStatus | None,
    device_type: DeviceType | None,
    user_id: str | None,
    low_battery: bool,  # noqa: FBT001
    output_format: OutputFormat,
) -> None:
    """List devices with their status, when they were last seen and their battery level."""
    settings = settings_for(config_file, **{"storage.url": db})
    threshold = settings.devices.low_battery_pct if low_battery else None

    async def listing() -> list[Device]:
        async with open_database(settings) as database:
            return await registry.list_devices(
                database.conn,
                status=status,
                device_type=device_type,
                user_id=user_id,
                below_battery_pct=threshold,
            )

    found = complete(listing())
    click.echo(render(HEADERS, [_row(d, output_format) for d in found], output_format))


@devices.command("show")
@config_option
@db_option
@click.argument("device_id")
@format_option
def devices_show(
    config_file: Path | None, db: str | None, device_id: str, output_format: OutputFormat
) -> None:
    """Everything the registry knows about one device, and its newest implausible readings."""
    settings = settings_for(config_file, **{"storage.url": db})

    async def find() -> tuple[Device | None, list[Implausible]]:
        async with open_database(settings) as database:
            device = await registry.find_device(database.conn, device_id)
            found = await registry.implausible_readings(database.conn, device_id, SHOWN_IMPLAUSIBLE)
            return device, found

    device, implausible = complete(find())
    if device is None:
        raise click.ClickException(f"no device {device_id!r}")
    fields = [*Device.__slots__, "implausible_readings"]
    shown = [f"{r.recorded_at.isoformat()} {r.counter}={r.counter_kwh} kWh" for r in implausible]
    values: list[Cell] = [*(getattr(device, name) for name in Device.__slots__), "; ".join(shown)]
    if output_format != "table":
        click.echo(render(fields, [values], output_format))
        return
    width = max(map(len, Device.__slots__))
    for name, value in zip(fields[:-1], values, strict=False):
        text = "" if value is None else str(value)
        if name == "last_seen" and device.last_seen is not None:
            text = f"{device.last_seen.isoformat()} ({ago(_now() - device.last_seen)})"
        click.echo(f"{name.ljust(width)}  {text}".rstrip())
    click.echo(f"{'implausible'.ljust(width)}  {len(implausible) or 'none'}")
    for line in shown:
        click.echo(f"  {line}")


@devices.command("register")
@config_option
@db_option
@click.argument("device_id")
@click.option("--type", "device_type", type=click.Choice(DEVICE_TYPES), required=True)
@click.option("--user", "user_id", help="Owner (user id); readings carry it from now on.")
@click.option("--name")
@click.option("--location")
@click.option("--firmware", "firmware_version")
@click.option(
    "--max-power-kw",
    type=click.FloatRange(min=0, min_open=True),
    help="The most power the device can measure; bounds its counter's energy.",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    help="Its place in the home's balance (query self-consumption); default: its type's.",
)
def devices_register(
    config_file: Path | None,
    db: str | None,
    device_id: str,
    device_type: DeviceType,
    user_id: str | None,
    name: str | None,
    location: str | None,
    firmware_version: str | None,
    max_power_kw: float | None,
    role: Role | None,
) -> None:
    """Register a device (or update what is given of a registered one)."""
    problem = device_id_problem(device_id)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="DEVICE_ID")
    settings = settings_for(config_file, **{"storage.url": db})
    device = Registration(
        device_id, device_type, user_id, name, location, firmware_version, max_power_kw, role
    )
    complete(_register(settings, [device]))
    click.echo(f"registered {device_id}")
    audited(settings, f"device {device_id}" + (f" user {user_id}" if user_id else ""), 1)


@devices.command("replace-meter")
@config_option
@db_option
@click.argument("device_id")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="When the new meter was fitted, ISO 8601 with an offset (default: now).",
)
def devices_replace_meter(
    config_file: Path | None, db: str | None, device_id: str, at: str | None
) -> None:
    """Declare a device's meter replaced: its counters start anew with the next value."""
    settings = settings_for(config_file, **{"storage.url": db})
    now = _now()
    when = now if at is None else _instant(at)

    async def replace() -> int:
        async with (
            open_database(settings) as database,
            database.conn.begin(),
        ):
            return await replace_meter(database.conn, device_id, when, now)

    counters = complete(replace())
    if counters:
        click.echo(f"{device_id}: {counters} counters start anew after {when.isoformat()}")
    else:
        click.echo(f"{device_id} has no counters yet: its first value starts one anyway")


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not ISO 8601", param_hint="--at") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. +01:00 or Z", param_hint="--at")
    return moment


@devices.command("import")
@config_option
@db_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def devices_import(config_file: Path | None, db: str | None, csv_file: Path) -> None:
    """Register the devices of a CSV file in one transaction.

    Columns: device_id, device_type (required), user_id, name, location,
    firmware_version, max_power_kw. Nothing is imported if any row is invalid.
    """
    settings = settings_for(config_file, **{"storage.url": db})
    registrations, problems = read_registrations(csv_file)
    if problems:
        raise click.ClickException("nothing imported:\n" + "\n".join(problems))
    complete(_register(settings, registrations))
    click.echo(f"imported {len(registrations)} devices")
    audited(settings, f"file {csv_file.name}", len(registrations))


@devices.command("set-status")
@config_option
@db_option
@click.argument("status", type=click.Choice(STATUSES))
@click.argument("device_ids", nargs=-1, required=True)
def devices_set_status(
    config_file: Path | None, db: str | None, status: DeviceStatus, device_ids: tuple[str, ...]
) -> None:
    """Set the status of devices (maintenance and error stay until set otherwise)."""
    settings = settings_for(config_file, **{"storage.url": db})

    async def update() -> list[str]:
        async with open_database(settings) as database:
            conn = database.conn
            async with conn.begin():
                return await registry.set_status(conn, device_ids, status, datetime.now(UTC))

    changed = complete(update())
    missing = sorted(set(device_ids) - set(changed))
    if changed:
        click.echo(f"{status}: {', '.join(changed)}")
    if missing:
        raise click.ClickException(f"no such devices: {', '.join(missing)}")


async def _register(settings: Settings, devices: Sequence[Registration]) -> None:
    async with open_database(settings) as database:
        conn = database.conn
        async with conn.begin():
            await registry.register(conn, devices, datetime.now(UTC))


def read_registrations(path: Path) -> tuple[list[Registration], list[str]]:
    """The registrations in a CSV file, and a line of words for each invalid row."""
    registrations: list[Registration] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        missing = {"device_id", "device_type"} - set(reader.fieldnames or ())
        if missing:
            return [], [f"{path}: missing columns {', '.join(sorted(missing))}"]
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            device_id = (row.get("device_id") or "").strip()
            device_type = (row.get("device_type") or "").strip()
            problem = device_id_problem(device_id)
            if problem is None and device_id in seen:
                problem = f"device {device_id!r} appears twice"
            if problem is None and device_type not in DEVICE_TYPES:
                problem = f"device_type {device_type!r} is not one of {', '.join(DEVICE_TYPES)}"
            power = (row.get("max_power_kw") or "").strip()
            max_power_kw = _positive(power) if power else None
            if problem is None and power and max_power_kw is None:
                problem = f"max_power_kw {power!r} is not a number of kW above 0"
            role = (row.get("role") or "").strip() or None
            if problem is None and role is not None and role not in ROLES:
                problem = f"role {role!r} is not one of {', '.join(ROLES)}"
            if problem is not None:
                problems.append(f"line {line}: {problem}")
                continue
            seen.add(device_id)
            text = {k: (row.get(k) or "").strip() or None for k in _OPTIONAL}
            registrations.append(
                Registration(
                    device_id,
                    device_type,  # type: ignore[arg-type]
                    text["user_id"],
                    text["name"],
                    text["location"],
                    text["firmware_version"],
                    max_power_kw,
                    role,  # type: ignore[arg-type]
                )
            )
    return registrations, problems


_OPTIONAL = ("user_id", "name", "location", "firmware_version")


def _positive(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _row(device: Device, output_format: OutputFormat) -> list[Cell]:
    last_seen: Cell = device.last_seen
    if output_format == "table":
        # For people: how long ago, which is what they are asking.
        last_seen = "never" if device.last_seen is None else ago(_now() - device.last_seen)
    return [
        device.device_id,
        device.device_type,
        device.status,
        last_seen,
        device.battery_level,
        device.user_id,
        device.name,
        device.location,
    ]


def _now() -> datetime:
    return datetime.now(UTC)
