"""What every command shares: the common options, settings loading, running a coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ingest.errors import ConfigError
from ingest.settings import Settings, load_settings
from storage import StorageError

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="METERFLOW_CONFIG",
    help="TOML settings file (see config/meterflow.toml).",
)
broker_option = click.option("--broker", help="Broker URL, e.g. mqtt://127.0.0.1:1883.")
db_option = click.option("--db", help="Database URL, e.g. sqlite:///data/meterflow.db.")


def settings_for(config_file: Path | None, **overrides: Any) -> Settings:  # noqa: ANN401
    try:
        return load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


T = TypeVar("T")


def complete(
    coroutine: Coroutine[Any, Any, T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a command's coroutine to its end; a storage error becomes the command's error."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coroutine)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
