"""The audit trail from the command line (storage/audit.py): `audited`, which the commands
that read or change personal data call once they are done, and `meterflow audit list`."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import DBAPIError

from meterflow.cli.common import complete, config_option, db_option, open_database, settings_for
from meterflow.cli.output import Cell, OutputFormat, format_option, render
from meterflow.settings import Settings
from storage import open_engine
from storage.audit import AuditEntry, entries, record

# What a query statement is recorded as at most.
TARGET_CHARS = 500


def actor() -> str:
    """Who runs the command: `meterflow --actor NAME` (or METERFLOW_ACTOR), else the OS
    user."""
    given = click.get_current_context().find_root().params.get("actor")
    if given:
        return str(given)
    try:
        return getpass.getuser()
    except OSError:  # no user name in the environment or the password database
        return f"uid {os.getuid()}"


def audited(settings: Settings, target: str, rows: int | None) -> None:
    """Append to the trail that the running command, about `target`, returned, wrote or
    changed `rows` rows."""
    context = click.get_current_context()
    names = []
    while context.parent is not None:
        names.append(str(context.info_name))
        context = context.parent
    entry = AuditEntry(
        datetime.now(UTC), actor(), " ".join(reversed(names)), target[:TARGET_CHARS], rows
    )
    complete(_record(settings, entry))


async def _record(settings: Settings, entry: AuditEntry) -> None:
    # The engine alone, not the schema check: a restored backup may be older than the
    # trail, and the restore must still say so.
    engine = open_engine(settings.storage.url, settings.storage.sqlite)
    try:
        async with engine.begin() as conn:
            await record(conn, entry)
    except DBAPIError:
        click.echo(
            f"{entry.command} is not in the audit trail: the database's schema is older than "
            "it; `meterflow db upgrade` makes it current",
            err=True,
        )
    finally:
        await engine.dispose()


def _instant(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ISO 8601 (2026-03-01, or a time)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
def audit() -> None:
    """The audit trail: who read or changed personal data."""


@audit.command("list")
@config_option
@db_option
@click.option(
    "--since",
    callback=_instant,
    help="From this day or time on, ISO 8601 (UTC unless it says; default: all).",
)
@format_option
def audit_list(
    config_file: Path | None, db: str | None, since: datetime | None, output_format: OutputFormat
) -> None:
    """Every command that read or changed personal data: when (UTC), who, what, rows."""
    settings = settings_for(config_file, **{"storage.url": db})
    found = complete(_entries(settings, since))
    rows: list[list[Cell]] = [
        [e.at.isoformat(), e.actor, e.command, e.target, e.rows] for e in found
    ]
    click.echo(render(("at", "actor", "command", "target", "rows"), rows, output_format))


async def _entries(settings: Settings, since: datetime | None) -> list[AuditEntry]:
    async with open_database(settings) as database, database.conn.begin():
        return await entries(database.conn, since)
