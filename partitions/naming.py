"""Monthly partition names.

A partition's name is derived from a validated `Month`, never from text a device sent:
`energy_data_YYYY_MM` is the only shape a name can take, which is what makes it safe to
splice into DDL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from partitions.errors import InvalidMonthError

BASE_NAME = "energy_data"
_NAME = re.compile(rf"^{BASE_NAME}_(\d{{4}})_(\d{{2}})$")
MIN_YEAR = 1970
MAX_YEAR = 9999


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month in UTC, the unit of partitioning."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not MIN_YEAR <= self.year <= MAX_YEAR or not 1 <= self.month <= 12:
            raise InvalidMonthError(f"{self.year:04d}-{self.month:02d} is not a month we partition")

    @classmethod
    def of(cls, moment: datetime) -> Month:
        """The UTC month a timezone-aware instant falls into."""
        if moment.tzinfo is None:
            raise InvalidMonthError("a naive datetime has no month in UTC")
        utc = moment.astimezone(UTC)
        return cls(utc.year, utc.month)

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse `YYYY-MM`."""
        match = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if match is None:
            raise InvalidMonthError(f"{text!r} is not a month in the form YYYY-MM")
        return cls(int(match[1]), int(match[2]))

    @property
    def table_name(self) -> str:
        return f"{BASE_NAME}_{self.year:04d}_{self.month:02d}"

    @property
    def start(self) -> datetime:
        """The first instant of the month, in UTC."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant of the next month, in UTC."""
        return self.next().start

    def next(self) -> Month:
        if self.month == 12:
            return Month(self.year + 1, 1)
        return Month(self.year, self.month + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def month_of_table(name: str) -> Month | None:
    """The month a partition table holds, or None when `name` is not a partition."""
    match = _NAME.match(name)
    if match is None:
        return None
    try:
        return Month(int(match[1]), int(match[2]))
    except InvalidMonthError:
        return None
