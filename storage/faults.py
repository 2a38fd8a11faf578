"""Crash points for the chaos tests, switched on only by an environment variable.

`METERFLOW_TEST_CRASH=after-commit:3` ends the process abruptly (like SIGKILL: no cleanup,
no goodbye to the broker) the third time it passes the `after-commit` point. Unset, every
check is one comparison against None.
"""

from __future__ import annotations

import os
from typing import Literal

CrashPoint = Literal["before-commit", "during-commit", "after-commit"]
CRASH_EXIT_CODE = 86
_SPEC = os.environ.get("METERFLOW_TEST_CRASH")


class _Crash:
    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, times = spec.partition(":")
            self.point, self.remaining = point, int(times or "1")

    def at(self, point: CrashPoint) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os._exit(CRASH_EXIT_CODE)


_crash = _Crash(_SPEC)


def crash_point(point: CrashPoint) -> None:
    """Die here if the chaos tests asked for it."""
    _crash.at(point)
