"""Cumulative counters become interval energy: once, across batches, restarts and resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import BatchWriter, Reading, WriteBatch, open_engine
from storage.counters import CounterState, advance, apply_counters
from tests.databases import Database, as_utc

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def counted(minutes: float, kwh: float, device: str = "plug-1") -> Reading:
    return Reading(
        "tele/plug-1/SENSOR", device, "smart_meter", at(minutes), None, 0.1,
        counter="import", counter_kwh=kwh,
    )  # fmt: skip


def test_a_counter_gives_no_energy_at_first_then_the_differences() -> None:
    """First value: unknown interval; after that, each increase is the interval's energy."""
    states: dict[tuple[str, str, str], CounterState] = {}
    readings = apply_counters([counted(0, 10.0), counted(1, 10.25), counted(2, 10.25)], states)
    assert [r.energy_kwh for r in readings] == [None, 0.25, 0.0]
    assert [r.metadata["event"] for r in readings if r.metadata] == ["first", "advance", "advance"]
    assert states[("plug-1", "consumption", "import")] == CounterState(10.25, at(2))


def test_a_large_drop_is_a_reset_and_a_small_one_is_noise() -> None:
    """A counter falling to near zero restarted; one dipping by 1 % did not."""
    state = CounterState(100.0, at(0))
    assert advance(state, 0.4, at(1))[0] == 0.4
    assert advance(state, 0.4, at(1))[2] == "reset"
    energy, after, event = advance(state, 99.0, at(1))
    assert (energy, after, event) == (0.0, CounterState(100.0, at(1)), "noise")


def test_a_reading_older_than_the_counter_gives_no_energy_and_changes_nothing() -> None:
    """A late or redelivered message cannot count its energy again."""
    state = CounterState(12.0, at(5))
    assert advance(state, 11.0, at(4)) == (None, state, "stale")
    assert advance(state, 12.0, at(5)) == (None, state, "stale")


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=50))
def test_energy_is_never_negative_whatever_the_counter_does(values: list[float]) -> None:
    """Any sequence of counter values, rising, falling or jumping, yields energy >= 0."""
    readings = apply_counters([counted(i, v) for i, v in enumerate(values)], {})
    assert all(r.energy_kwh is None or r.energy_kwh >= 0 for r in readings)


def test_a_monotonic_counter_sums_to_its_total_increase() -> None:
    """Without resets, the stored energy adds up to last minus first value."""
    values = [5.0, 5.5, 5.5, 7.25, 9.0]
    readings = apply_counters([counted(i, v) for i, v in enumerate(values)], {})
    assert sum(r.energy_kwh or 0.0 for r in readings) == pytest.approx(4.0)


async def test_counters_survive_a_restart_without_double_counting(database: Database) -> None:
    """Batches across two writers (a restart), a redelivered message and a reset: 1.5 kWh."""
    url = database.url

    async def write(*readings: Reading) -> None:
        engine = open_engine(url)
        async with BatchWriter(engine, url=url) as writer:
            await writer.write(WriteBatch(list(readings)))
        await engine.dispose()

    await write(counted(0, 10.0), counted(1, 10.5))
    # Restarted: the broker redelivers the reading at minute 1, then new ones arrive.
    await write(counted(1, 10.5), counted(2, 11.0))
    await write(counted(3, 0.5))  # the plug lost its counter
    rows = database.query("SELECT recorded_at, energy_amount FROM energy_data ORDER BY recorded_at")
    energies = {as_utc(moment): energy for moment, energy in rows}
    assert energies == {at(0): None, at(1): 0.5, at(2): 0.5, at(3): 0.5}
    assert database.query("SELECT value_kwh FROM meter_counters") == [(0.5,)]
