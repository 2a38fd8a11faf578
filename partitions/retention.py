"""Which months a retention policy retires (pure month arithmetic), and retiring them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from partitions.errors import PartitionError
from partitions.naming import Month
from partitions.store import PartitionStore

RetentionAction = Literal["archive", "drop"]

# The current month takes writes, and the previous one late readings: never retire them.
MIN_KEEP_MONTHS = 2


def months_back(month: Month, count: int) -> Month:
    """The month `count` months before `month`."""
    index = month.year * 12 + month.month - 1 - count
    return Month(index // 12, index % 12 + 1)


def retired(months: Iterable[Month], current: Month, keep_months: int) -> list[Month]:
    """The months older than the newest `keep_months` (the current month counts as one)."""
    if keep_months < MIN_KEEP_MONTHS:
        raise PartitionError(
            f"keeping {keep_months} months would touch the current or the previous month; "
            f"keep at least {MIN_KEEP_MONTHS}"
        )
    oldest_kept = months_back(current, keep_months - 1)
    return sorted(m for m in months if m < oldest_kept)


def parse_age(text: str) -> int:
    """`24mo`, `2y` or `24` as a number of months."""
    stripped = text.strip().lower()
    for suffix, factor in (("mo", 1), ("m", 1), ("y", 12)):
        if stripped.endswith(suffix) and stripped[: -len(suffix)].isdigit():
            return int(stripped[: -len(suffix)]) * factor
    if stripped.isdigit():
        return int(stripped)
    raise PartitionError(f"{text!r} is not an age in months like 24mo or 2y")


async def apply_retention(
    store: PartitionStore,
    months: Iterable[Month],
    current: Month,
    *,
    keep_months: int,
    action: RetentionAction,
    archive_dir: Path,
) -> list[tuple[Month, str]]:
    """Archive or drop every month the policy retires; say what became of each."""
    done = []
    for month in retired(months, current, keep_months):
        if action == "archive":
            path = await store.archive(month, archive_dir)
            done.append((month, f"archived to {path}"))
        else:
            rows = await store.drop(month)
            done.append((month, f"dropped ({rows} readings)"))
    return done
