"""Monthly partition naming and the view over the partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partitions import (
    InvalidMonthError,
    Month,
    month_of_table,
    months_between,
    source_for,
    view_ddl,
)
from storage import Reading, energy_partition
from storage.records import by_month


def test_month_of_an_offset_instant_is_its_utc_month() -> None:
    """00:30 on 1 December at +01:00 is still November in UTC."""
    moment = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert Month.of(moment) == Month(2026, 11)
    assert Month.of(moment).table_name == "energy_data_2026_11"


def test_naive_datetimes_have_no_month() -> None:
    """A time without an offset is refused rather than guessed."""
    with pytest.raises(InvalidMonthError):
        Month.of(datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(("year", "month"), [(1969, 12), (2026, 0), (2026, 13), (10000, 1)])
def test_impossible_months_are_refused(year: int, month: int) -> None:
    """Only real months between 1970 and 9999 can name a partition."""
    with pytest.raises(InvalidMonthError):
        Month(year, month)


@pytest.mark.parametrize(
    "name",
    [
        "energy_data",
        "energy_data_2026_13",
        "energy_data_2026_1",
        "energy_data_2026_11; DROP TABLE x",
        "iot_devices",
        "energy_data_2026_11_old",
    ],
)
def test_only_partition_shaped_names_are_partitions(name: str) -> None:
    """Names that are not exactly energy_data_YYYY_MM with a real month are not partitions."""
    assert month_of_table(name) is None


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 11, 30)))  # noqa: DTZ001
def test_every_instant_falls_inside_its_partition_bounds(naive: datetime) -> None:
    """For any instant, its month's partition starts at or before it and ends after it."""
    moment = naive.replace(tzinfo=UTC)
    month = Month.of(moment)
    assert month.start <= moment < month.end
    assert month_of_table(month.table_name) == month
    assert month.next().start == month.end


@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1970, 1, 2),  # noqa: DTZ001
            max_value=datetime(9999, 11, 30),  # noqa: DTZ001
            timezones=st.timezones(),
        ),
        max_size=20,
    )
)
def test_readings_group_by_the_month_of_their_utc_time(moments: list[datetime]) -> None:
    """Batches are split by Month.of each reading's time, keeping batch order in a month."""
    readings = [Reading("t", f"d{n}", "smart_meter", at, 0.1, 1.0) for n, at in enumerate(moments)]
    expected: dict[Month, list[Reading]] = {}
    for reading in readings:
        expected.setdefault(Month.of(reading.recorded_at), []).append(reading)
    assert by_month(readings) == expected


def test_view_unions_partitions_in_month_order_and_exists_empty() -> None:
    """The view names every partition once, oldest first; with none it still has columns."""
    template = energy_partition("template")
    [ddl] = view_ddl([Month(2026, 11), Month(2025, 1)], template)
    assert ddl.index("energy_data_2025_01") < ddl.index("energy_data_2026_11")
    assert ddl.count("UNION ALL") == 1
    [empty] = view_ddl([], template)
    assert "WHERE 0 = 1" in empty
    assert '"recorded_at"' in empty


def test_a_range_touches_exactly_the_months_it_overlaps() -> None:
    """[Mar 31 23:00, Apr 1 01:00) is March and April; an end on a boundary excludes it."""
    start = datetime(2026, 3, 31, 23, tzinfo=UTC)
    assert months_between(start, datetime(2026, 4, 1, 1, tzinfo=UTC)) == [
        Month(2026, 3), Month(2026, 4),
    ]  # fmt: skip
    assert months_between(start, datetime(2026, 4, 1, tzinfo=UTC)) == [Month(2026, 3)]
    assert months_between(datetime(2025, 12, 5, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)) == [
        Month(2025, 12), Month(2026, 1), Month(2026, 2),
    ]  # fmt: skip


def test_a_pruned_source_names_only_existing_partitions_of_the_range() -> None:
    """One month: the table itself; several: their union; none: an empty row source."""
    existing = [Month(2026, 3), Month(2026, 4)]
    day = datetime(2026, 3, 5, tzinfo=UTC)
    assert source_for(day, day.replace(day=6), existing, ["a"]) == "energy_data_2026_03"
    both = source_for(day, datetime(2026, 5, 2, tzinfo=UTC), existing, ["a"])
    assert (
        both
        == '(SELECT "a" FROM energy_data_2026_03 UNION ALL SELECT "a" FROM energy_data_2026_04)'
    )
    assert "WHERE 0 = 1" in source_for(
        day.replace(year=2020), day.replace(year=2021), existing, ["a"]
    )
