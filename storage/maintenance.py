"""SQLite upkeep that is safe while the daemon writes: checks and optimisation."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

from partitions import month_of_table
from storage import cipher
from storage.engine import sqlite_file


@dataclass(frozen=True, slots=True)
class CheckReport:
    integrity: list[str]
    size_bytes: int
    partitions: int
    readings: int
    devices: int
    dead_letters: int

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"]


def check(url: str, *, key: str | None) -> CheckReport:
    """PRAGMA integrity_check and a few counts; readers never block the daemon in WAL mode."""
    path = sqlite_file(url, "db check")
    with closing(cipher.connect(f"file:{path}?mode=ro", key, uri=True)) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        names = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]

        def count(table: str) -> int:
            return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

        return CheckReport(
            integrity=integrity,
            size_bytes=path.stat().st_size,
            partitions=sum(month_of_table(name) is not None for name in names),
            readings=count("energy_data"),
            devices=count("iot_devices"),
            dead_letters=count("dead_letters"),
        )


@dataclass(frozen=True, slots=True)
class OptimizeReport:
    freed_pages: int
    free_pages_left: int
    incremental_vacuum: bool


def optimize(url: str, busy_timeout_ms: int = 30_000, *, key: str | None) -> OptimizeReport:
    """ANALYZE, PRAGMA optimize, incremental vacuum, then a WAL checkpoint.

    Each step waits its turn for the write lock, so the daemon only pauses briefly.
    Databases created before meterflow enabled auto_vacuum cannot vacuum incrementally:
    the report says so, and how many free pages an offline VACUUM would return.
    """
    path = sqlite_file(url, "db optimize")
    with closing(cipher.connect(path, key, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA optimize")
        (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
        (before,) = conn.execute("PRAGMA freelist_count").fetchone()
        incremental = mode == INCREMENTAL
        if incremental:
            # executescript steps the statement to its end; execute would free one page.
            conn.executescript("PRAGMA incremental_vacuum;")
        (after,) = conn.execute("PRAGMA freelist_count").fetchone()
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return OptimizeReport(before - after, after, incremental)


# PRAGMA auto_vacuum's value for INCREMENTAL.
INCREMENTAL = 2
