"""The `meterflow` command: one module per command or command group, loaded when used.

A command's module is imported only when that command runs, so that `meterflow
partitions list` loads the partition code and not the daemon, the MQTT stack or paho.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from meterflow.cli.common import reported

__all__ = ["main"]

# Command name -> (module under meterflow.cli, attribute), in the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("audit", "audit"),
    "backup": ("backup", "backup"),
    "carbon": ("series", "carbon"),
    "config": ("config", "config"),
    "costs": ("costs", "costs"),
    "db": ("db", "db"),
    "devices": ("devices", "devices"),
    "export": ("export", "export"),
    "import": ("history", "import_history"),
    "migrate": ("migrate", "migrate"),
    "partitions": ("partitions", "partitions"),
    "plot": ("plot", "plot"),
    "prices": ("series", "prices"),
    "privacy": ("privacy", "privacy"),
    "query": ("query", "query"),
    "report": ("report", "report"),
    "restore": ("backup", "restore"),
    "run": ("run", "run"),
    "simulate": ("simulate", "simulate"),
    "status": ("status", "status"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy loading),
    each run inside the one seam between meterflow's errors and the operator."""

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401  (whatever the command returns)
        with reported():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"meterflow.cli.{module}"), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"meterflow.cli.{module}.{attribute} is not a click command")
        return command


@click.group(cls=_LazyGroup)
@click.option(
    "--actor",
    envvar="METERFLOW_ACTOR",
    help="Who runs the command, for the audit trail (default: the OS user).",
)
def main(actor: str | None) -> None:  # the actor is read where the trail is written
    """meterflow: MQTT smart-meter and solar readings into monthly-partitioned tables."""
