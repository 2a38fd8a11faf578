"""`meterflow config`: the effective settings."""

from __future__ import annotations

import json
from pathlib import Path

import click

from meterflow.cli.common import broker_option, config_option, db_option, settings_for


@click.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@config_option
@broker_option
@db_option
def config_show(config_file: Path | None, broker: str | None, db: str | None) -> None:
    """Print the effective settings as JSON, secrets masked."""
    settings = settings_for(config_file, **{"mqtt.url": broker, "storage.url": db})
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
