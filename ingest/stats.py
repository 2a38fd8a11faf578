"""Counters and histograms the daemon keeps instead of logging every message.

They are plain numbers updated on the hot path at the cost of an addition; the periodic
log summary and the Prometheus endpoint read them when asked.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from storage import WriteResult

BATCH_ROWS_BOUNDS = (1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 60000)
COMMIT_SECONDS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_SECONDS_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


@dataclass(slots=True)
class Histogram:
    """Observations counted into buckets with the given upper bounds (and one above them)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le="bound").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds = self.counts, self.bounds
        n = 0
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
            n += 1
        self.total += total
        self.count += n

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, ending with +Inf."""
        buckets = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


@dataclass(slots=True)
class Stats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    # Readings stored as "implausible": energy beyond the device's power bound, in no total.
    implausible: int = 0
    # Messages that decoded to nothing worth storing (heartbeats, relay states).
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    reconnects: int = 0
    batch_rows: Histogram = field(default_factory=lambda: Histogram(BATCH_ROWS_BOUNDS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_SECONDS_BOUNDS))
    lag_seconds: Histogram = field(default_factory=lambda: Histogram(LAG_SECONDS_BOUNDS))
    commit_seconds_max: float = 0.0
    _last_stored: int = field(default=0, repr=False)
    _last_at: float = field(default_factory=time.monotonic, repr=False)
    _last_batches: int = field(default=0, repr=False)
    _last_commit_total: float = field(default=0.0, repr=False)

    def committed(
        self, result: WriteResult, rows: int, seconds: float, lags: Iterable[float] = ()
    ) -> None:
        """Count a committed batch of `rows` messages and the lag of each of its readings."""
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.statuses += result.statuses
        self.implausible += result.implausible
        self.ignored += result.empty
        self.rejected.update(result.rejected)
        self.batches += 1
        self.batch_rows.observe(rows)
        self.commit_seconds.observe(seconds)
        self.commit_seconds_max = max(self.commit_seconds_max, seconds)
        self.lag_seconds.observe_many(lags)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Totals, and rates since the previous summary."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._last_at, 1e-9)
        batches = self.batches - self._last_batches
        commit_time = self.commit_seconds.total - self._last_commit_total
        summary = {
            "readings_per_s": round((self.stored - self._last_stored) / elapsed, 1),
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected.total(),
            "batches": batches,
            "commit_ms_mean": round(1000 * commit_time / batches, 2) if batches else None,
            "commit_ms_max": round(1000 * self.commit_seconds_max, 2),
            "reconnects": self.reconnects,
        }
        self._last_at, self._last_stored = now, self.stored
        self._last_batches, self._last_commit_total = self.batches, self.commit_seconds.total
        self.commit_seconds_max = 0.0
        return summary
