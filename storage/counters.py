"""Cumulative energy counters turned into interval energy, once, across restarts.

Devices such as Tasmota plugs, Shelly meters and Zigbee plugs report a counter (kWh since
some start) rather than energy per interval. The writer keeps each counter's last value in
`meter_counters`, in the batch's transaction, and stores the difference. Rules, in the
spirit of Home Assistant's `total_increasing`:

- the first value ever seen gives no energy (the interval it covers is unknown);
- a value at least the previous one gives the difference;
- a drop of more than `RESET_DROP` of the previous value is a reset (a reboot without
  persistence, a reset command, a new meter): the new value is energy since the reset;
- a smaller drop is measurement noise: no energy, and the stored value stays;
- a reading not newer than the stored one (a late or redelivered message) gives none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backend import insert_for
from storage.records import Reading
from storage.tables import meter_counters

RESET_DROP = 0.10

CounterKey = tuple[str, str, str]
CounterEvent = Literal["first", "advance", "reset", "noise", "stale"]


@dataclass(frozen=True, slots=True)
class CounterState:
    value_kwh: float
    observed_at: datetime


def counter_key(reading: Reading) -> CounterKey | None:
    if reading.counter is None or reading.counter_kwh is None:
        return None
    return reading.device_id, reading.data_type, reading.counter


def advance(
    state: CounterState | None, value: float, at: datetime
) -> tuple[float | None, CounterState | None, CounterEvent]:
    """Energy since `state` for a counter reading `value` at `at`, and the state after it."""
    if state is None:
        return None, CounterState(value, at), "first"
    if at <= state.observed_at:
        return None, state, "stale"
    if value >= state.value_kwh:
        return value - state.value_kwh, CounterState(value, at), "advance"
    if state.value_kwh - value > RESET_DROP * state.value_kwh:
        return value, CounterState(value, at), "reset"
    return 0.0, CounterState(state.value_kwh, at), "noise"


def apply_counters(
    readings: Sequence[Reading], states: dict[CounterKey, CounterState]
) -> list[Reading]:
    """Readings with counters given their interval energy, in order; `states` is updated."""
    out = []
    for reading in readings:
        key = counter_key(reading)
        if key is None or reading.counter_kwh is None:
            out.append(reading)
            continue
        energy, state, event = advance(states.get(key), reading.counter_kwh, reading.recorded_at)
        if state is not None:
            states[key] = state
        note = {"counter": reading.counter, "counter_kwh": reading.counter_kwh, "event": event}
        out.append(
            msgspec.structs.replace(
                reading, energy_kwh=energy, metadata={**(reading.metadata or {}), **note}
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
               table.c.observed_at)
        .where(tuple_(table.c.device_id, table.c.data_type, table.c.counter).in_(keys))
    )  # fmt: skip
    return {
        (row.device_id, row.data_type, row.counter): CounterState(row.value_kwh, row.observed_at)
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
         "value_kwh": state.value_kwh, "observed_at": state.observed_at, "updated_at": now}
        for (device, data_type, counter), state in sorted(states.items())
    ]  # fmt: skip
    statement = insert(meter_counters)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["device_id", "data_type", "counter"],
            set_={
                "value_kwh": statement.excluded.value_kwh,
                "observed_at": statement.excluded.observed_at,
                "updated_at": statement.excluded.updated_at,
            },
        ),
        rows,
    )
