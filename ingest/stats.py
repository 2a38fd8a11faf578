"""Counters the daemon keeps instead of logging every message, and their periodic summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from storage import WriteResult


@dataclass(slots=True)
class Stats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    reconnects: int = 0
    commit_seconds_total: float = 0.0
    commit_seconds_max: float = 0.0
    _last_stored: int = field(default=0, repr=False)
    _last_at: float = field(default_factory=time.monotonic, repr=False)
    _last_batches: int = field(default=0, repr=False)
    _last_commit_total: float = field(default=0.0, repr=False)

    def committed(self, result: WriteResult, seconds: float) -> None:
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.rejected += result.dead_letters
        self.batches += 1
        self.commit_seconds_total += seconds
        self.commit_seconds_max = max(self.commit_seconds_max, seconds)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Totals, and rates since the previous summary."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._last_at, 1e-9)
        batches = self.batches - self._last_batches
        commit_time = self.commit_seconds_total - self._last_commit_total
        summary = {
            "readings_per_s": round((self.stored - self._last_stored) / elapsed, 1),
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": batches,
            "commit_ms_mean": round(1000 * commit_time / batches, 2) if batches else None,
            "commit_ms_max": round(1000 * self.commit_seconds_max, 2),
            "reconnects": self.reconnects,
        }
        self._last_at, self._last_stored = now, self.stored
        self._last_batches, self._last_commit_total = self.batches, self.commit_seconds_total
        self.commit_seconds_max = 0.0
        return summary
