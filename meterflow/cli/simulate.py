"""`meterflow simulate`: a fleet of simulated devices publishing readings."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import click

from ingest.decode.topics import TopicScheme
from ingest.errors import BrokerError
from meterflow.cli.common import (
    broker_option,
    complete,
    config_option,
    db_option,
    open_database,
    settings_for,
)
from meterflow.publisher import Publisher
from meterflow.settings import Settings
from meterflow.simulate import fleet, messages, owners, paced
from storage import registry
from storage.registry import Registration


@click.command()
@config_option
@broker_option
@click.option("--devices", default=100, show_default=True, help="Number of simulated devices.")
@click.option("--rate", default=100.0, show_default=True, help="Messages per second, all devices.")
@click.option("--duration", default=60.0, show_default=True, help="Seconds to run.")
@click.option("--bad-fraction", default=0.0, show_default=True, help="Share of malformed messages.")
@click.option("--seed", type=int, default=None, help="Random seed, for a repeatable run.")
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=None,
    help="Register the devices in the database, shared among this many owners first.",
)
@db_option
def simulate(
    config_file: Path | None,
    broker: str | None,
    devices: int,
    rate: float,
    duration: float,
    bad_fraction: float,
    seed: int | None,
    users: int | None,
    db: str | None,
) -> None:
    """Publish realistic readings from simulated meters and panels (QoS 1)."""
    if devices < 1 or rate <= 0 or duration <= 0 or not 0 <= bad_fraction <= 1:
        raise click.BadParameter("need devices ≥ 1, rate > 0, duration > 0, 0 ≤ bad-fraction ≤ 1")
    settings = settings_for(config_file, **{"mqtt.url": broker, "storage.url": db})
    rng = random.Random(seed)
    simulated = fleet(devices, rng)
    if users is not None:
        complete(_register(settings, owners(simulated, users)))
        click.echo(f"registered {devices} devices, owned by {min(users, devices)} users")
    stream = messages(
        simulated,
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


async def _register(settings: Settings, devices: list[Registration]) -> None:
    async with open_database(settings) as database, database.conn.begin():
        await registry.register(database.conn, devices, datetime.now(UTC))
