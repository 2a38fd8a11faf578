"""What every command shares: the common options, settings loading, running a coroutine,
and the one seam where errors become what the operator reads (`reported`, wrapped around
every command by the `meterflow` group).

Exit codes (README, "Exit codes"):

- 0: done; for `meterflow run`, stopped by SIGTERM or SIGINT;
- 1: the command could not do its job (settings, a refused operation, a database that
  cannot be opened): one line on stderr says what and, where there is one, the fix;
- 2: the command line itself is wrong (click's usage errors);
- 3: `meterflow run` stopped because the database refused a batch in a way no retry
  can mend; the batch's messages stay unacknowledged, and the broker keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from ingest.errors import IngestError
from meterflow.settings import Settings, load_settings
from partitions import PartitionError
from storage import StorageError, WriteError
from storage.database import Database, connect

archive_dir_option = click.option(
    "--archive-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where archived months are (default: retention.archive_dir).",
)

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="METERFLOW_CONFIG",
    help="TOML settings file (see config/meterflow.toml).",
)
broker_option = click.option("--broker", help="Broker URL, e.g. mqtt://127.0.0.1:1883.")
db_option = click.option("--db", help="Database URL, e.g. sqlite:///data/meterflow.db.")


def open_database(settings: Settings) -> AbstractAsyncContextManager[Database]:
    """The configured database, with the settings' time zones recorded for SQL's local days
    (storage/zones.py)."""
    return connect(settings.storage.url, settings.storage.sqlite, settings.analytics)


def settings_for(config_file: Path | None, **overrides: Any) -> Settings:  # noqa: ANN401
    return load_settings(config_file, **overrides)


T = TypeVar("T")

EXIT_DATABASE_FAILED = 3


class DatabaseFailed(click.ClickException):
    """The daemon's database refused a batch for good: one line, exit code 3."""

    exit_code = EXIT_DATABASE_FAILED


def complete(
    coroutine: Coroutine[Any, Any, T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a command's coroutine to its end."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


@contextmanager
def reported() -> Iterator[None]:
    """The seam: every error of meterflow's own trees becomes one line and an exit code.

    Foreign errors were translated into those trees where they entered (the storage
    backends, the MQTT source); anything else is a bug, and keeps its traceback.
    """
    try:
        yield
    except WriteError as exc:
        raise DatabaseFailed(
            f"stopped: {exc}. Nothing is lost: the broker keeps the unacknowledged "
            "messages until meterflow runs again."
        ) from exc
    except (StorageError, PartitionError, IngestError) as exc:
        raise click.ClickException(str(exc)) from exc
