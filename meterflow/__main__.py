"""`python -m meterflow`, the same as the `meterflow` command."""

from meterflow.cli import main

main()
