"""Running `meterflow` commands in-process, as a user would type them."""

from __future__ import annotations

from click.testing import CliRunner, Result

from meterflow.cli import main


def meterflow(*args: str) -> Result:
    """Run the command; stdout in `.output`, stderr in `.stderr`."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)
