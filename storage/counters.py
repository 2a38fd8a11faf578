"""Cumulative energy counters turned into interval energy, once, across restarts, and
never more energy than the device could have measured.

Devices such as Tasmota plugs, Shelly meters and Zigbee plugs report a counter (kWh since
some start) rather than energy per interval. The writer keeps each counter's last good
value in `meter_counters`, in the batch's transaction, and stores the difference. Rules:

- the first value ever seen gives no energy (the interval it covers is unknown);
- a value at least the last good one gives the difference;
- a drop of at most `RESET_DROP` of the last good value is measurement noise: no energy,
  and the good value stays;
- a larger drop is held (`low_kwh`): no energy yet, since one message cannot tell a glitch
  (gateways that report 0 once after a restart, then the old value again) from a reset.
  The next value decides: back to about the good value, the drop was a glitch and the
  energy is measured from the good value; continuing from the low value, the counter
  restarted from zero and its value is the energy since; lower still, it is held instead;
- the energy of an interval can never exceed the device's maximum power times the
  interval (at least `MIN_INTERVAL_S`, plus `RESOLUTION_KWH` for a counter's last digit):
  a value that would give more is *implausible*. It adds nothing to any total, its
  reading keeps the raw value, and the counter continues from it, so a jump is never
  counted later either;
- a reading not newer than the counter's last (a late or redelivered message) gives none.

A reading's energy covers the interval since the good value it was counted from: its
`interval_start`, over which the rollups spread it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import insert_for
from storage.errors import StorageError
from storage.records import IMPLAUSIBLE, DeviceType, Reading
from storage.tables import meter_counters

# Unless a device's own is registered: a household connection's main fuse allows tens
# of kW; a home's solar panels, batteries and heat pumps stay well below. Inverters reach
# 100 kW on commercial roofs, DC fast chargers 350 kW.
DEFAULT_MAX_POWER_KW: dict[DeviceType, float] = {
    "smart_meter": 50.0,
    "solar_panel": 50.0,
    "battery_storage": 50.0,
    "inverter": 100.0,
    "ev_charger": 350.0,
    "heat_pump": 50.0,
}
# The most power a device of each type can measure, in kW.
MaxPower = Mapping[DeviceType, float]
RESET_DROP = 0.10
# A counter's value moves in steps of its last digit, often a watt-hour, whatever the
# interval: this much above the power bound is still the device's rounding.
RESOLUTION_KWH = 0.001
# The shortest interval the bound assumes. Devices without a clock are stamped on arrival,
# and after an outage the broker delivers what it kept all at once, microseconds apart,
# though each was measured a publish interval after the one before: a lifetime counter
# credited at once still exceeds any device's minute many times over.
MIN_INTERVAL_S = 60.0

CounterKey = tuple[str, str, str]
CounterEvent = Literal[
    "first", "advance", "noise", "drop", "glitch", "reset", "implausible", "stale"
]


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter's last good value and when it was read; `low_kwh` is a value far below
    it, read at `low_at`, that the next value will show a glitch or a reset. `replaced`:
    the meter was replaced at `observed_at`, and the next value starts a new counter."""

    value_kwh: float
    observed_at: datetime
    low_kwh: float | None = None
    low_at: datetime | None = None
    replaced: bool = False


def counter_key(reading: Reading) -> CounterKey | None:
    if reading.counter is None or reading.counter_kwh is None:
        return None
    return reading.device_id, reading.data_type, reading.counter


def advance(
    state: CounterState | None, value: float, at: datetime, max_power_kw: float
) -> tuple[float | None, CounterState | None, CounterEvent]:
    """Energy since `state` for a counter reading `value` at `at`, and the state after it."""
    if state is not None and at <= (state.low_at or state.observed_at):
        return None, state, "stale"
    if state is None or state.replaced:
        return None, CounterState(value, at), "first"
    if state.low_kwh is not None:
        return _after_drop(state, state.low_kwh, value, at, max_power_kw)
    good = state.value_kwh
    if value >= good:
        return _bounded(state, value - good, CounterState(value, at), max_power_kw, "advance")
    if good - value <= RESET_DROP * good:
        return 0.0, replace(state, observed_at=at), "noise"
    return None, replace(state, low_kwh=value, low_at=at), "drop"


def _after_drop(
    state: CounterState, low: float, value: float, at: datetime, max_power_kw: float
) -> tuple[float | None, CounterState, CounterEvent]:
    """The value after a large drop shows what the drop was."""
    good = state.value_kwh
    if value >= (1 - RESET_DROP) * good:
        after = CounterState(max(value, good), at)
        return _bounded(state, max(0.0, value - good), after, max_power_kw, "glitch")
    if value >= low:
        return _bounded(state, value, CounterState(value, at), max_power_kw, "reset")
    return None, replace(state, low_kwh=value, low_at=at), "drop"


def _bounded(
    state: CounterState,
    energy: float,
    after: CounterState,
    max_power_kw: float,
    event: CounterEvent,
) -> tuple[float | None, CounterState, CounterEvent]:
    """`energy` over the interval since the good value, unless no device of `max_power_kw`
    could have measured it; the counter goes on from `after` either way."""
    seconds = (after.observed_at - state.observed_at).total_seconds()
    hours = max(seconds, MIN_INTERVAL_S) / 3600
    if energy > max_power_kw * hours + RESOLUTION_KWH:
        return None, after, "implausible"
    return energy, after, event


def apply_counters(
    readings: Sequence[Reading],
    states: dict[CounterKey, CounterState],
    max_power_kw: Callable[[Reading], float],
) -> list[Reading]:
    """Readings with counters given their interval energy, in order; `states` is updated.

    An implausible reading keeps no energy and is marked `quality = "implausible"`.
    """
    out = []
    for reading in readings:
        key = counter_key(reading)
        if key is None or reading.counter_kwh is None:
            out.append(reading)
            continue
        before = states.get(key)
        energy, state, event = advance(
            before, reading.counter_kwh, reading.recorded_at, max_power_kw(reading)
        )
        if state is not None:
            states[key] = state
        note = {"counter": reading.counter, "counter_kwh": reading.counter_kwh, "event": event}
        quality = IMPLAUSIBLE if event == "implausible" else reading.quality
        out.append(
            msgspec.structs.replace(
                reading,
                energy_kwh=energy,
                quality=quality,
                metadata={**(reading.metadata or {}), **note},
                # The energy covers the time since the good value it was counted from.
                interval_start=None if energy is None or before is None else before.observed_at,
            )
        )
    return out


async def load_counters(
    conn: AsyncConnection, keys: Sequence[CounterKey]
) -> dict[CounterKey, CounterState]:
    if not keys:
        return {}
    table = meter_counters
    result = await conn.execute(
        select(table.c.device_id, table.c.data_type, table.c.counter, table.c.value_kwh,
               table.c.observed_at, table.c.low_kwh, table.c.low_at, table.c.replaced)
        .where(tuple_(table.c.device_id, table.c.data_type, table.c.counter).in_(keys))
    )  # fmt: skip
    return {
        (row.device_id, row.data_type, row.counter): CounterState(
            row.value_kwh, row.observed_at, row.low_kwh, row.low_at, bool(row.replaced)
        )
        for row in result
    }


async def save_counters(
    conn: AsyncConnection, states: dict[CounterKey, CounterState], now: datetime
) -> None:
    if not states:
        return
    insert = insert_for(conn)
    rows = [
        {"device_id": device, "data_type": data_type, "counter": counter,
         "value_kwh": state.value_kwh, "observed_at": state.observed_at,
         "low_kwh": state.low_kwh, "low_at": state.low_at, "replaced": state.replaced,
         "updated_at": now}
        for (device, data_type, counter), state in sorted(states.items())
    ]  # fmt: skip
    statement = insert(meter_counters)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["device_id", "data_type", "counter"],
            set_={
                "value_kwh": statement.excluded.value_kwh,
                "observed_at": statement.excluded.observed_at,
                "low_kwh": statement.excluded.low_kwh,
                "low_at": statement.excluded.low_at,
                "replaced": statement.excluded.replaced,
                "updated_at": statement.excluded.updated_at,
            },
        ),
        rows,
    )


async def replace_meter(conn: AsyncConnection, device_id: str, at: datetime, now: datetime) -> int:
    """Declare the device's meter replaced at `at`: each of its counters starts anew with
    the first value read after `at`. Returns how many counters it had.

    Refused when a counter has a value read after `at`: that value was already counted
    against the old meter.
    """
    table = meter_counters
    newest = await conn.scalar(
        select(func.max(table.c.observed_at)).where(table.c.device_id == device_id)
    )
    if newest is not None and newest > at:
        raise StorageError(
            f"{device_id}'s counters have a value read at {newest.isoformat()}, after "
            f"{at.isoformat()}, already counted against the old meter: give --at after it"
        )
    result = await conn.execute(
        update(table)
        .where(table.c.device_id == device_id)
        .values(observed_at=at, low_kwh=None, low_at=None, replaced=True, updated_at=now)
    )
    return result.rowcount
