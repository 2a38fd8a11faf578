"""`meterflow status`: what an operator asks first, from the daemon and from the database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from meterflow.cli.common import (
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.cli.output import ago
from meterflow.settings import Settings
from storage import dead_letters, registry
from storage.inuse import daemon_endpoint

ENDPOINT_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    devices: dict[str, int]
    low_battery: int
    partitions: int
    newest_reading: datetime | None
    dead_letters_24h: int


@click.command()
@config_option
@db_option
@click.option(
    "--url",
    help="The daemon's endpoint, e.g. http://127.0.0.1:9464 (default: the one the daemon on "
    "this SQLite database serves, else from metrics.port).",
)
def status(config_file: Path | None, db: str | None, url: str | None) -> None:
    """The daemon's health and counters, and the database's devices and partitions.

    Exits 1 when the daemon's endpoint is configured but unreachable or not ready.
    """
    settings = settings_for(config_file, **{"storage.url": db})
    endpoint = url or daemon_endpoint(settings.storage.url) or _configured_endpoint(settings)
    healthy = True
    if endpoint is None:
        click.echo("daemon: no endpoint (set metrics.port or pass --url)")
    else:
        healthy = _report_daemon(endpoint.rstrip("/"))
    facts = complete(_database_facts(settings))
    devices = ", ".join(f"{n} {s}" for s, n in sorted(facts.devices.items())) or "none"
    click.echo(f"database: {settings.storage.url}")
    click.echo(f"  devices: {devices}; {facts.low_battery} with low battery")
    newest = facts.newest_reading
    newest_text = "none" if newest is None else f"{newest.isoformat()} ({_ago(newest)})"
    click.echo(f"  partitions: {facts.partitions}; newest reading {newest_text}")
    click.echo(f"  dead letters in the last 24 h: {facts.dead_letters_24h}")
    if not healthy:
        raise SystemExit(1)


def _configured_endpoint(settings: Settings) -> str | None:
    metrics = settings.metrics
    if metrics.port in (None, 0):
        return None
    host = "127.0.0.1" if metrics.host in {"0.0.0.0", "::", ""} else metrics.host  # noqa: S104
    return f"http://{host}:{metrics.port}"


def _report_daemon(endpoint: str) -> bool:
    try:
        readiness = _fetch_json(f"{endpoint}/readyz")
        samples = _fetch_samples(f"{endpoint}/metrics")
    except (OSError, ValueError) as exc:
        click.echo(f"daemon: unreachable at {endpoint} ({exc})")
        return False
    state = "ready" if readiness["ready"] else "NOT READY: " + "; ".join(readiness["problems"])
    click.echo(f"daemon: {state}")
    age = readiness.get("last_commit_age_s")
    click.echo(
        f"  in flight {readiness['in_flight']}, queued {readiness['pending']}, last commit "
        + ("never" if age is None else f"{age:.1f} s ago")
    )
    rejected = sum(
        v for (name, _), v in samples.items() if name == "meterflow_messages_rejected_total"
    )
    click.echo(
        f"  received {samples.get(('meterflow_messages_received_total', ''), 0):.0f}, "
        f"stored {samples.get(('meterflow_readings_stored_total', ''), 0):.0f}, "
        f"duplicates {samples.get(('meterflow_readings_duplicate_total', ''), 0):.0f}, "
        f"rejected {rejected:.0f}, "
        f"reconnects {samples.get(('meterflow_reconnects_total', ''), 0):.0f}"
    )
    return bool(readiness["ready"])


def _fetch_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=ENDPOINT_TIMEOUT_S) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as error:
        # 503 is an answer: the body says why the daemon is not ready.
        body = error.read()
    document: dict[str, Any] = json.loads(body)
    return document


def _fetch_samples(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=ENDPOINT_TIMEOUT_S) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _database_facts(settings: Settings) -> DatabaseFacts:
    low = settings.devices.low_battery_pct
    async with open_database(settings) as database:
        conn = database.conn
        async with conn.begin():
            since = datetime.now(UTC) - timedelta(days=1)
            rejected = await conn.execute(
                select(func.count()).where(dead_letters.c.received_at >= since)
            )
            return DatabaseFacts(
                devices=await registry.status_counts(conn),
                low_battery=await registry.low_battery_count(conn, low),
                partitions=len(database.backend.partitions.months),
                newest_reading=await registry.newest_sighting(conn),
                dead_letters_24h=int(rejected.scalar_one()),
            )


def _ago(moment: datetime) -> str:
    return ago(datetime.now(UTC) - moment)
