"""Cumulative counters become interval energy: once, across batches, restarts, glitches
and resets, and never more than the device could have measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import BatchWriter, Reading, WriteBatch, open_engine
from storage.counters import RESOLUTION_KWH, CounterState, advance, apply_counters
from tests.databases import Database, as_utc
from tests.test_migrations import meterflow

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def counted(minutes: float, kwh: float, device: str = "plug-1") -> Reading:
    return Reading(
        "tele/plug-1/SENSOR", device, "smart_meter", at(minutes), None, 0.1,
        counter="import", counter_kwh=kwh,
    )  # fmt: skip


MAX_KW = 50.0


def bound(_: Reading) -> float:
    return MAX_KW


def test_a_counter_gives_no_energy_at_first_then_the_differences() -> None:
    """First value: unknown interval; after that, each increase is the interval's energy."""
    states: dict[tuple[str, str, str], CounterState] = {}
    readings = apply_counters(
        [counted(0, 10.0), counted(1, 10.25), counted(2, 10.25)], states, bound
    )
    assert [r.energy_kwh for r in readings] == [None, 0.25, 0.0]
    assert [r.metadata["event"] for r in readings if r.metadata] == ["first", "advance", "advance"]
    assert states[("plug-1", "consumption", "import")] == CounterState(10.25, at(2))


def test_a_large_drop_is_held_until_the_next_value_shows_a_glitch_or_a_reset() -> None:
    """Falling to near zero gives nothing yet; back near the old value it was a glitch,
    measured from the old value; continuing from the low value the counter restarted."""
    state = CounterState(100.0, at(0))
    energy, held, event = advance(state, 0.4, at(1), MAX_KW)
    assert (energy, held, event) == (None, CounterState(100.0, at(0), 0.4, at(1)), "drop")
    assert advance(held, 100.25, at(2), MAX_KW) == (0.25, CounterState(100.25, at(2)), "glitch")
    assert advance(held, 0.75, at(2), MAX_KW) == (0.75, CounterState(0.75, at(2)), "reset")
    lower = advance(held, 0.1, at(2), MAX_KW)
    assert lower == (None, CounterState(100.0, at(0), 0.1, at(2)), "drop")


def test_a_small_drop_is_noise() -> None:
    """A counter dipping by 1 % gives no energy and keeps its good value."""
    state = CounterState(100.0, at(0))
    energy, after, event = advance(state, 99.0, at(1), MAX_KW)
    assert (energy, after, event) == (0.0, CounterState(100.0, at(1)), "noise")


def test_a_gateway_reporting_zero_once_after_a_restart_credits_no_lifetime_counter() -> None:
    """The issue's micro-inverter: 123 kWh lifetime, 0 for one message at night, then on.
    Before, that was a reset: 123 kWh in 3 seconds. Now: the 5 W it really produced."""
    values = [123.0, 123.000004, 0.0, 123.000008, 123.000012]
    readings = apply_counters([counted(i / 20, v) for i, v in enumerate(values)], {}, bound)
    assert [r.metadata["event"] for r in readings if r.metadata] == [
        "first", "advance", "drop", "glitch", "advance"
    ]  # fmt: skip
    assert sum(r.energy_kwh or 0.0 for r in readings) == pytest.approx(0.000012)


def test_energy_beyond_the_maximum_power_is_implausible_and_counted_nowhere() -> None:
    """A jump of 490 kWh in a minute on a 50 kW device is kept raw, marked implausible,
    and the counter goes on from it, so the jump is never counted later either."""
    values = [10.0, 10.5, 500.5, 500.75]
    readings = apply_counters([counted(i, v) for i, v in enumerate(values)], {}, bound)
    assert [r.energy_kwh for r in readings] == [None, 0.5, None, 0.25]
    assert [r.quality for r in readings] == ["good", "good", "implausible", "good"]
    assert readings[2].metadata == {
        "counter": "import",
        "counter_kwh": 500.5,
        "event": "implausible",
    }


def test_a_reading_older_than_the_counter_gives_no_energy_and_changes_nothing() -> None:
    """A late or redelivered message cannot count its energy again."""
    state = CounterState(12.0, at(5))
    assert advance(state, 11.0, at(4), MAX_KW) == (None, state, "stale")
    assert advance(state, 12.0, at(5), MAX_KW) == (None, state, "stale")


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=50))
def test_energy_is_never_negative_whatever_the_counter_does(values: list[float]) -> None:
    """Any sequence of counter values, rising, falling or jumping, yields energy >= 0."""
    readings = apply_counters([counted(i, v) for i, v in enumerate(values)], {}, bound)
    assert all(r.energy_kwh is None or r.energy_kwh >= 0 for r in readings)
    # Each interval within the power bound: all of them together, within it over the span.
    total = sum(r.energy_kwh or 0.0 for r in readings)
    assert total <= MAX_KW * (len(values) - 1) / 60 + RESOLUTION_KWH * len(values)


def test_a_monotonic_counter_sums_to_its_total_increase() -> None:
    """Without resets, the stored energy adds up to last minus first value."""
    values = [5.0, 5.5, 5.5, 7.25, 9.0]
    readings = apply_counters([counted(5 * i, v) for i, v in enumerate(values)], {}, bound)
    assert sum(r.energy_kwh or 0.0 for r in readings) == pytest.approx(4.0)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_glitches_and_restarts_neither_invent_nor_lose_what_the_device_measured(
    data: st.DataObject,
) -> None:
    """A lifetime counter read every minute, with one-message drops to zero and genuine
    restarts from zero: the energy stored is exactly what the device measured, less what
    it used between its last reading before a restart and the restart, which no reading
    shows; and no interval holds more than the power bound allows."""
    steps = data.draw(st.lists(st.floats(0, 1), min_size=12, max_size=80))
    used = [data.draw(st.floats(100, 10_000))]  # the device's true lifetime energy
    for step in steps[1:]:
        used.append(used[-1] + step * MAX_KW / 60)
    reported, restarted_at, lost, quiet = [used[0]], 0.0, 0.0, 0
    for i in range(1, len(used)):
        event = data.draw(st.sampled_from(["none"] * 8 + ["glitch", "restart"]))
        counter = used[i] - restarted_at
        quiet += 1
        if quiet > 3 and i < len(used) - 3 and event == "glitch":
            reported.append(0.0)
            quiet = 0
        elif quiet > 3 and i < len(used) - 3 and event == "restart" and counter > 100:
            fraction = data.draw(st.floats(0, 1))
            restart = used[i - 1] + fraction * (used[i] - used[i - 1])
            lost += restart - used[i - 1]
            restarted_at = restart
            reported.append(used[i] - restarted_at)
            quiet = 0
        else:
            reported.append(counter)
    readings = apply_counters([counted(i, v) for i, v in enumerate(reported)], {}, bound)
    energies = [r.energy_kwh or 0.0 for r in readings]
    assert sum(energies) == pytest.approx(used[-1] - used[0] - lost, abs=1e-6)
    assert all(r.quality == "good" for r in readings)
    assert max(energies) <= MAX_KW * 2 / 60 + RESOLUTION_KWH


async def write(url: str, *readings: Reading) -> None:
    """Store the readings in one batch, through a writer of their own (a daemon's run)."""
    engine = open_engine(url)
    async with BatchWriter(engine, url=url) as writer:
        await writer.write(WriteBatch(list(readings)))
    await engine.dispose()


async def test_counters_survive_a_restart_without_double_counting(database: Database) -> None:
    """Batches across writers (restarts), a redelivered message and a reset whose held
    low value waits in the database for the next writer: 1.75 kWh."""
    url = database.url

    await write(url, counted(0, 10.0), counted(1, 10.5))
    # Restarted: the broker redelivers the reading at minute 1, then new ones arrive.
    await write(url, counted(1, 10.5), counted(2, 11.0))
    await write(url, counted(3, 0.5))  # the plug lost its counter: held, glitch or reset?
    await write(url, counted(4, 0.75))  # it goes on from there: a reset
    rows = database.query("SELECT recorded_at, energy_amount FROM energy_data ORDER BY recorded_at")
    energies = {as_utc(moment): energy for moment, energy in rows}
    assert energies == {at(0): None, at(1): 0.5, at(2): 0.5, at(3): None, at(4): 0.75}
    assert database.query("SELECT value_kwh, low_kwh FROM meter_counters") == [(0.75, None)]


async def test_a_registered_maximum_power_marks_a_jump_implausible_and_shows_it(
    database: Database,
) -> None:
    """A 2 kW plug whose counter jumps 0.5 kWh in a minute (30 kW): the reading is kept
    raw and marked implausible, adds to no rollup, and `devices show` lists it."""
    url = database.url
    registered = meterflow("devices", "register", "plug-1", "--type", "smart_meter",
                           "--max-power-kw", "2", "--db", url)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    engine = open_engine(url)
    async with BatchWriter(engine, url=url) as writer:
        result = await writer.write(
            WriteBatch([counted(0, 7.0), counted(1, 7.02), counted(2, 7.52), counted(3, 7.54)])
        )
    await engine.dispose()
    assert result.implausible == 1
    rows = database.query(
        "SELECT recorded_at, energy_amount, quality FROM energy_data ORDER BY recorded_at"
    )
    assert [(as_utc(t), e, q) for t, e, q in rows] == [
        (at(0), None, "good"),
        (at(1), pytest.approx(0.02), "good"),
        (at(2), None, "implausible"),
        (at(3), pytest.approx(0.02), "good"),
    ]
    [(total,)] = database.query("SELECT energy_kwh FROM energy_daily")
    assert total == pytest.approx(0.04)
    shown = meterflow("devices", "show", "plug-1", "--db", url)
    assert "max_power_kw      2.0" in shown.stdout
    assert "implausible       1" in shown.stdout
    assert f"  {at(2).isoformat()} import=7.52 kWh" in shown.stdout
    assert meterflow("db", "verify", "--db", url).returncode == 0


def test_a_replaced_meter_starts_a_new_counter_with_its_first_value() -> None:
    """After a replacement, the new meter's first value gives no energy and the next
    counts from it; a late value of the old meter, read before, gives none."""
    replaced = CounterState(812.5, at(10), replaced=True)
    assert advance(replaced, 800.0, at(9), MAX_KW) == (None, replaced, "stale")
    energy, new, event = advance(replaced, 0.25, at(11), MAX_KW)
    assert (energy, new, event) == (None, CounterState(0.25, at(11)), "first")
    assert advance(new, 0.5, at(12), MAX_KW)[0] == pytest.approx(0.25)


async def test_devices_replace_meter_makes_the_next_value_start_a_new_counter(
    database: Database,
) -> None:
    """`meterflow devices replace-meter ID --at TIME`: the old meter's 812 kWh and the new
    one's 3 kWh are neither subtracted nor counted; energy goes on from the new meter."""
    url = database.url

    await write(url, counted(0, 812.0), counted(5, 812.25))
    early = meterflow("devices", "replace-meter", "plug-1", "--at", at(4).isoformat(), "--db", url)
    assert early.returncode == 1
    assert "already counted against the old meter: give --at after it" in early.stderr
    done = meterflow("devices", "replace-meter", "plug-1", "--at", at(6).isoformat(), "--db", url)
    assert done.returncode == 0, done.stderr
    assert "plug-1: 1 counters start anew" in done.stdout
    await write(url, counted(7, 3.0), counted(12, 3.25))
    rows = database.query("SELECT recorded_at, energy_amount FROM energy_data ORDER BY recorded_at")
    assert [(as_utc(t), e) for t, e in rows] == [
        (at(0), None),
        (at(5), pytest.approx(0.25)),
        (at(7), None),
        (at(12), pytest.approx(0.25)),
    ]
    naive = meterflow("devices", "replace-meter", "plug-1", "--at", "2026-05-01T01:00", "--db", url)
    assert naive.returncode == 2
    assert "give a UTC offset" in naive.stderr
