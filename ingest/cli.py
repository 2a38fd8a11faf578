"""The `meterflow` command."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import structlog

from ingest.daemon import Daemon
from ingest.errors import BrokerError, ConfigError
from ingest.logs import configure_logging
from ingest.publisher import Publisher
from ingest.settings import Settings, load_settings
from ingest.simulate import fleet, messages, paced
from ingest.topics import TopicScheme
from partitions import Month, repair
from storage import SCHEMA_VERSION, StorageError, backend_for, maintenance, open_engine, upgrade
from storage.backup import backup_sqlite
from storage.transfer import CopyReport, Side, copy_database, count_readings

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="METERFLOW_CONFIG",
    help="TOML settings file (see config/meterflow.toml).",
)
broker_option = click.option("--broker", help="Broker URL, e.g. mqtt://127.0.0.1:1883.")
db_option = click.option("--db", help="Database URL, e.g. sqlite:///data/meterflow.db.")


def _settings(config_file: Path | None, **overrides: Any) -> Settings:  # noqa: ANN401
    try:
        return load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


T = TypeVar("T")


def _complete(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to its end; a storage error becomes the command's error."""
    try:
        return asyncio.run(coroutine)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """meterflow: MQTT smart-meter and solar readings into monthly-partitioned tables."""


@main.command()
@config_option
@broker_option
@db_option
@click.option(
    "--instance",
    type=click.IntRange(min=1),
    help="Number of this daemon among several; its MQTT client id gets -N appended.",
)
def run(config_file: Path | None, broker: str | None, db: str | None, instance: int | None) -> None:
    """Run the ingest daemon until SIGTERM or SIGINT."""
    settings = _settings(config_file, **{"mqtt.url": broker, "storage.url": db})
    if instance is not None:
        mqtt = settings.mqtt.model_copy(
            update={"client_id": f"{settings.mqtt.client_id}-{instance}"}
        )
        settings = settings.model_copy(update={"mqtt": mqtt})
    configure_logging(settings.log.level, settings.log.format)
    _complete(_run(settings))


async def _run(settings: Settings) -> None:
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    structlog.get_logger("meterflow").info(
        "starting", database=settings.storage.url, broker=settings.mqtt.url
    )
    await daemon.run()


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@config_option
@db_option
def db_upgrade(config_file: Path | None, db: str | None) -> None:
    """Bring the database's schema to the version this meterflow needs."""
    settings = _settings(config_file, **{"storage.url": db})
    applied = _complete(_upgrade(settings))
    if applied:
        click.echo(f"applied schema versions {', '.join(map(str, applied))}")
    click.echo(f"schema is at version {SCHEMA_VERSION}")


@db.command("check")
@config_option
@db_option
def db_check(config_file: Path | None, db: str | None) -> None:
    """SQLite: integrity check and counts (safe while the daemon runs)."""
    settings = _settings(config_file, **{"storage.url": db})
    try:
        report = maintenance.check(settings.storage.url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"integrity: {'ok' if report.ok else '; '.join(report.integrity)}")
    click.echo(
        f"size {report.size_bytes / 2**20:.1f} MiB, {report.partitions} partitions, "
        f"{report.readings} readings, {report.devices} devices, "
        f"{report.dead_letters} dead letters"
    )
    if not report.ok:
        raise click.ClickException("the database failed its integrity check")


@db.command("optimize")
@config_option
@db_option
def db_optimize(config_file: Path | None, db: str | None) -> None:
    """SQLite: ANALYZE, PRAGMA optimize and a WAL checkpoint (safe while the daemon runs)."""
    settings = _settings(config_file, **{"storage.url": db})
    try:
        maintenance.optimize(settings.storage.url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("optimized")


async def _upgrade(settings: Settings) -> list[int]:
    engine = open_engine(settings.storage.url, settings.storage.sqlite)
    try:
        async with engine.connect() as conn:
            return await upgrade(conn, backend_for(engine.dialect.name))
    finally:
        await engine.dispose()


@main.group()
def partitions() -> None:
    """Monthly partitions."""


@partitions.command("repair")
@config_option
@db_option
def partitions_repair(config_file: Path | None, db: str | None) -> None:
    """PostgreSQL: move readings out of a DEFAULT partition into their months' partitions."""
    settings = _settings(config_file, **{"storage.url": db})
    moved = _complete(_repair(settings))
    for month, rows in sorted(moved.items()):
        click.echo(f"{month}: moved {rows} readings into {month.table_name}")
    click.echo("repaired" if moved else "no readings outside monthly partitions")


async def _repair(settings: Settings) -> dict[Month, int]:
    engine = open_engine(settings.storage.url, settings.storage.sqlite)
    try:
        if engine.dialect.name != "postgresql":
            return {}
        async with engine.connect() as conn, conn.begin():
            return await repair(conn)
    finally:
        await engine.dispose()


@main.command()
@click.option(
    "--from",
    "source_url",
    required=True,
    help="Database to copy, e.g. sqlite:///data/meterflow.db.",
)
@click.option(
    "--to", "target_url", required=True, help="Database to copy into, e.g. postgresql+asyncpg://..."
)
def migrate(source_url: str, target_url: str) -> None:
    """Copy devices, readings and dead letters to another database, then verify the copy.

    Safe to run again after an interruption: it continues where it stopped. Stop the
    daemons writing to the source first.
    """
    report = _complete(_migrate(source_url, target_url))
    click.echo(
        f"copied {report.devices} devices, {report.readings} readings, "
        f"{report.dead_letters} new dead letters"
    )
    for check in report.months:
        state = "ok" if check.matches else "MISMATCH"
        click.echo(f"{check.month}: {check.source_rows} -> {check.target_rows} rows, {state}")
    if not report.verified:
        raise click.ClickException("verification failed: the copy differs from the source")
    click.echo("verified: every month has equal counts and checksums")


async def _migrate(source_url: str, target_url: str) -> CopyReport:
    source = Side(open_engine(source_url), source_url)
    target = Side(open_engine(target_url), target_url)
    try:
        total = await count_readings(source)
        with click.progressbar(length=total, label="readings", file=sys.stderr) as bar:
            return await copy_database(source, target, progress=bar.update)
    finally:
        await source.engine.dispose()
        await target.engine.dispose()


@main.command()
@config_option
@db_option
@click.option(
    "--to",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the backups (created owner-only).",
)
@click.option("--keep", default=7, show_default=True, help="How many backups to keep.")
def backup(config_file: Path | None, db: str | None, directory: Path, keep: int) -> None:
    """Back up the SQLite database online (consistent while the daemon writes), gzipped."""
    settings = _settings(config_file, **{"storage.url": db})
    try:
        made = backup_sqlite(settings.storage.url, directory, keep=keep)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up to {made}")


@main.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@config_option
@broker_option
@db_option
def config_show(config_file: Path | None, broker: str | None, db: str | None) -> None:
    """Print the effective settings as JSON, secrets masked."""
    settings = _settings(config_file, **{"mqtt.url": broker, "storage.url": db})
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@main.command()
@config_option
@broker_option
@click.option("--devices", default=100, show_default=True, help="Number of simulated devices.")
@click.option("--rate", default=100.0, show_default=True, help="Messages per second, all devices.")
@click.option("--duration", default=60.0, show_default=True, help="Seconds to run.")
@click.option("--bad-fraction", default=0.0, show_default=True, help="Share of malformed messages.")
@click.option("--seed", type=int, default=None, help="Random seed, for a repeatable run.")
def simulate(
    config_file: Path | None,
    broker: str | None,
    devices: int,
    rate: float,
    duration: float,
    bad_fraction: float,
    seed: int | None,
) -> None:
    """Publish realistic readings from simulated meters and panels (QoS 1)."""
    if devices < 1 or rate <= 0 or duration <= 0 or not 0 <= bad_fraction <= 1:
        raise click.BadParameter("need devices ≥ 1, rate > 0, duration > 0, 0 ≤ bad-fraction ≤ 1")
    settings = _settings(config_file, **{"mqtt.url": broker})
    rng = random.Random(seed)
    stream = messages(
        fleet(devices, rng),
        TopicScheme(settings.mqtt.topic_prefix),
        rate=rate,
        bad_fraction=bad_fraction,
        rng=rng,
    )
    try:
        mqtt = settings.mqtt
        with Publisher(
            mqtt.host,
            mqtt.port,
            username=mqtt.username,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            tls=mqtt.ssl_context(),
        ) as publisher:
            for _, (topic, payload) in zip(paced(rate, duration), stream, strict=False):
                publisher.publish(topic, payload)
            publisher.wait_acknowledged()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"published {publisher.published} messages, all acknowledged by the broker")


if __name__ == "__main__":
    main()
