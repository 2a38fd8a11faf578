"""The `meterflow` command: one module per command or command group."""

import click

from ingest.cli.backup import backup, restore
from ingest.cli.config import config
from ingest.cli.db import db
from ingest.cli.devices import devices
from ingest.cli.export import export
from ingest.cli.migrate import migrate
from ingest.cli.partitions import partitions
from ingest.cli.plot import plot
from ingest.cli.query import query
from ingest.cli.run import run
from ingest.cli.simulate import simulate
from ingest.cli.status import status

__all__ = ["main"]


@click.group()
def main() -> None:
    """meterflow: MQTT smart-meter and solar readings into monthly-partitioned tables."""


COMMANDS = (
    backup, config, db, devices, export, migrate, partitions, plot, query, restore, run,
    simulate, status,
)  # fmt: skip
for command in COMMANDS:
    main.add_command(command)
