"""Maintenance of whole partitions: list, drop, archive to a file, restore from one.

Each backend has a store (`SQLitePartitionStore`, `PostgresPartitionStore`) with the same
async interface, used by `meterflow partitions` and by the daemon's retention job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from partitions.naming import Month, month_of_table


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    month: Month
    rows: int
    size_bytes: int | None
    first_reading: datetime | None
    last_reading: datetime | None
    archived: bool = False


class PartitionStore(Protocol):
    async def inventory(self) -> list[PartitionInfo]:
        """Live partitions, oldest first."""
        ...

    async def drop(self, month: Month) -> int:
        """Delete a month's partition and its readings; return how many readings went."""
        ...

    async def archive(self, month: Month, directory: Path) -> Path:
        """Move a month out of the live database into a file in `directory`; return it."""
        ...

    async def restore(self, path: Path) -> tuple[Month, int]:
        """Bring an archived month back; return it and the readings added."""
        ...


RESTORED_SUFFIX = ".restored"


def set_aside(archive: Path) -> Path:
    """Rename a restored archive, so that it is not counted (or queried) twice."""
    return archive.rename(archive.with_name(archive.name + RESTORED_SUFFIX))


def archived_months(directory: Path, suffix: str) -> list[tuple[Month, Path]]:
    """The archive files `energy_data_YYYY_MM<suffix>` in a directory, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"energy_data_*{suffix}"):
        month = month_of_table(path.name.removesuffix(suffix))
        if month is not None and path.name.endswith(suffix):
            found.append((month, path))
    return sorted(found)
