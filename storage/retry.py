"""Capped exponential backoff with jitter, for anything worth trying again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of `initial * 2**attempt`, capped, each shortened by up to half at random.

    The jitter spreads reconnecting daemons apart so that they do not all hit a recovering
    broker or database in the same instant.
    """

    initial: float = 0.1
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.initial * 2 ** min(attempt, 32))
        return float(ceiling * random.uniform(0.5, 1.0))
