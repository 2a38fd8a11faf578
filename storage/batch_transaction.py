"""What one batch's transaction does on the general path, the one any batch can take.

The writer sends a batch here when it is not the common batch of plain readings
(storage/writer.py, `BatchWriter._plain`): it carries dead letters, availability or
counters, registration is off, or a month has no partition yet. Here the registry, the
counters and the partitions are consulted in the batch's own transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import registry
from storage.backend import Backend
from storage.counters import (
    MaxPower,
    apply_counters,
    counter_key,
    load_counters,
    save_counters,
)
from storage.devices import sightings
from storage.faults import crash_point
from storage.records import (
    IMPLAUSIBLE,
    DeadLetter,
    Reading,
    UnknownDevices,
    WriteBatch,
    WriteResult,
    by_month,
)
from storage.rejections import (
    dead_letter_row,
    split_registered,
    unregistered_reading,
    unregistered_status,
)
from storage.tables import dead_letters


async def store_batch(
    conn: AsyncConnection,
    backend: Backend,
    batch: WriteBatch,
    *,
    unknown_devices: UnknownDevices,
    max_power_kw: MaxPower,
    isolate: bool,
    load_partitions: bool = False,
) -> WriteResult:
    """Store `batch` in one transaction of `conn`'s; with `isolate`, reading by reading, so
    that a reading the database refuses becomes a dead letter and the rest are kept.
    `load_partitions` reads the partitions afresh first, in the same transaction.
    `max_power_kw` bounds counters' energy by device type, where a device has no own."""
    now = datetime.now(UTC)
    readings = list(batch.readings)
    rejected = list(batch.dead_letters)
    async with conn.begin():
        if load_partitions:
            await backend.partitions.load(conn)
        registered = await backend.registered_owners(conn, sorted({r.device_id for r in readings}))
        if unknown_devices == "reject":
            readings, unknown = split_registered(readings, registered)
            rejected.extend(unregistered_reading(r, now) for r in unknown)
        counted = await _with_counters(conn, readings, now, max_power_kw)
        readings = [r for r in counted if not carries_nothing(r)]
        created = await backend.partitions.ensure(conn, by_month(readings).keys())
        # Every reading is a sign of life, one that carries nothing included.
        await backend.upsert_devices(conn, sightings(counted), now)
        unknown_statuses = await registry.apply_availability(
            conn, batch.availability, now, register_unknown=unknown_devices == "register"
        )
        rejected.extend(unregistered_status(a) for a in unknown_statuses)
        refused: list[DeadLetter] = []
        if isolate:
            inserted, refused = await _insert_each(conn, backend, readings, now)
            rejected.extend(refused)
        else:
            inserted = await backend.insert_readings(conn, readings, now)
        if rejected:
            await conn.execute(insert(dead_letters), [dead_letter_row(d) for d in rejected])
        crash_point("during-commit")
    backend.partitions.confirm(created)
    return WriteResult(
        inserted=inserted,
        duplicates=len(readings) - inserted - len(refused),
        dead_letters=len(rejected),
        created_partitions=tuple(m.table_name for m in created),
        rejected=Counter(d.kind for d in rejected),
        statuses=len(batch.availability) - len(unknown_statuses),
        implausible=sum(r.quality == IMPLAUSIBLE for r in readings),
        empty=len(counted) - len(readings),
    )


def carries_nothing(reading: Reading) -> bool:
    """A counter's value that gave no energy (a device's first, a stale or a held one) and
    came with no other measurement: its state is kept in `meter_counters`, no row."""
    return (
        reading.counter is not None
        and reading.energy_kwh is None
        and reading.quality != IMPLAUSIBLE
        and reading.power_kw is None
        and reading.voltage is None
        and reading.current is None
        and reading.battery_pct is None
        and reading.irradiance_wm2 is None
        and reading.panel_temp_c is None
        and reading.state_of_charge is None
    )


def plain_outcome(batch: WriteBatch, inserted: int, created: Sequence[str] = ()) -> WriteResult:
    """The result of a batch of plain readings, `inserted` of them new, for which the
    partitions named `created` were made."""
    return WriteResult(
        inserted=inserted,
        duplicates=len(batch.readings) - inserted,
        dead_letters=0,
        created_partitions=tuple(created),
    )


async def _insert_each(
    conn: AsyncConnection, backend: Backend, readings: Sequence[Reading], now: datetime
) -> tuple[int, list[DeadLetter]]:
    inserted = 0
    refused: list[DeadLetter] = []
    for reading in readings:
        try:
            async with conn.begin_nested():
                inserted += await backend.insert_readings(conn, [reading], now)
        except IntegrityError as exc:
            reason = f"database refused the reading: {exc.orig}"
            refused.append(
                DeadLetter(
                    reading.topic, reading.to_payload(), reason, received_at=now, kind="refused"
                )
            )
    return inserted, refused


async def _with_counters(
    conn: AsyncConnection,
    readings: list[Reading],
    now: datetime,
    max_power_kw: MaxPower,
) -> list[Reading]:
    keys = sorted({key for r in readings if (key := counter_key(r)) is not None})
    if not keys:
        return readings
    states = await load_counters(conn, keys)
    before = dict(states)
    own = await registry.max_powers(conn, sorted({device for device, _, _ in keys}))

    def bound(reading: Reading) -> float:
        return own.get(reading.device_id) or max_power_kw[reading.device_type]

    counted = apply_counters(readings, states, bound)
    await save_counters(conn, {k: v for k, v in states.items() if before.get(k) != v}, now)
    return counted
