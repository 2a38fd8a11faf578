"""Copying a whole meterflow database to another one (SQLite to PostgreSQL, typically).

Resumable: every row is written with ON CONFLICT DO NOTHING on its natural key (device id;
device, data type and time for readings; topic, time and size for dead letters), so a
copy that was interrupted is finished by running it again. Rollup rows replace the
target's (ON CONFLICT DO UPDATE): the target's totals become the source's, including those
of months whose readings retention archived or dropped.

The copy ends with a verification: per month, the row count and a checksum over every
reading's identity and values; per rollup, a checksum over every row; both computed the
same way on both sides. Then the target's rollups are checked against its readings
(storage/verify.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import Month
from storage.backend import Dialect, backend_for, insert_for
from storage.migrations import require_current
from storage.rollups import MEASURES
from storage.tables import (
    dead_letters,
    device_owners,
    energy_15min,
    energy_daily,
    energy_hourly,
    energy_monthly,
    energy_parent,
    iot_devices,
    meter_counters,
)
from storage.verify import Difference, month_differences

ROLLUP_TABLES = (energy_15min, energy_hourly, energy_daily, energy_monthly)

CHUNK_ROWS = 5000
_READING_KEY = ("device_id", "data_type", "recorded_at")


@dataclass(frozen=True, slots=True)
class MonthCheck:
    month: Month
    source_rows: int
    target_rows: int
    matches: bool


@dataclass(frozen=True, slots=True)
class RollupCheck:
    table: str
    source_rows: int
    target_rows: int
    matches: bool


@dataclass
class CopyReport:
    devices: int = 0
    readings: int = 0
    dead_letters: int = 0
    months: list[MonthCheck] = field(default_factory=list)
    rollups: list[RollupCheck] = field(default_factory=list)
    # Rollup rows of the target that differ from the target's own readings.
    differences: list[Difference] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return (
            all(check.matches for check in self.months)
            and all(check.matches for check in self.rollups)
            and not self.differences
        )


class Side:
    """One database of the copy: its engine, its backend and its readings tables."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.backend: Dialect = backend_for(engine.dialect.name)

    def readings(self, month: Month) -> Table:
        return self.backend.readings_table(month)

    def insert(self, table: Table) -> Any:  # noqa: ANN401 - a dialect's Insert
        return insert_for(self.engine)(table)


async def count_readings(side: Side) -> int:
    """How many readings a database holds, over all its months."""
    async with side.engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(energy_parent()))
        await conn.commit()
    return int(total or 0)


async def copy_database(
    source: Side, target: Side, progress: Callable[[int], None] = lambda _: None
) -> CopyReport:
    """Copy devices, their owners and counters, every month of readings, the dead letters
    and the rollups; then verify."""
    report = CopyReport()
    async with source.engine.connect() as src, target.engine.connect() as dst:
        await require_current(src, source.backend, source.url)
        await require_current(dst, target.backend, target.url)
        report.devices = await _copy_rows(src, dst, target, iot_devices, ["device_id"])
        # Who owned what when, and each counter's last value, so that per-user figures and
        # counters go on where they were.
        await _copy_rows(src, dst, target, device_owners, ["device_id", "since"])
        await _copy_rows(src, dst, target, meter_counters, ["device_id", "data_type", "counter"])
        for month in sorted(source.backend.partitions.months):
            report.readings += await _copy_month(
                src, dst, source, target, month=month, progress=progress
            )
        report.dead_letters = await _copy_dead_letters(src, dst, target)
        for rollup in ROLLUP_TABLES:
            await _copy_rollup(src, dst, target, rollup)
        for month in sorted(source.backend.partitions.months):
            report.months.append(await _check_month(src, dst, source, target, month))
        for rollup in ROLLUP_TABLES:
            report.rollups.append(await _check_rollup(src, dst, rollup))
        for month in sorted(target.backend.partitions.months):
            async with dst.begin():
                report.differences += await month_differences(dst, target.backend, month)
    return report


async def _copy_rows(
    src: AsyncConnection, dst: AsyncConnection, target: Side, table: Table, key: list[str]
) -> int:
    """Copy a small table whole (bar a surrogate id), rows already there kept."""
    rows = [dict(r._mapping) for r in await src.execute(select(table))]  # noqa: SLF001
    await src.commit()
    for row in rows:
        row.pop("id", None)
    if rows:
        async with dst.begin():
            await dst.execute(target.insert(table).on_conflict_do_nothing(index_elements=key), rows)
    return len(rows)


async def _chunks(
    conn: AsyncConnection, table: Table, key_names: Sequence[str], month: Month | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """`table`'s rows (of `month`, if given) in key order, CHUNK_ROWS at a time (keyset
    pagination)."""
    key = tuple_(*(table.c[name] for name in key_names))
    last: tuple[Any, ...] | None = None
    while True:
        query = select(table)
        if month is not None:
            query = query.where(table.c.recorded_at >= month.start, table.c.recorded_at < month.end)
        if last is not None:
            # Typed literals, so the time is compared in the column's own stored form.
            bound = (literal(v, table.c[n].type) for n, v in zip(key_names, last, strict=True))
            query = query.where(key > tuple_(*bound))
        rows = (await conn.execute(query.order_by(*key.clauses).limit(CHUNK_ROWS))).all()
        await conn.commit()
        if not rows:
            return
        batch = [dict(row._mapping) for row in rows]  # noqa: SLF001
        last = tuple(batch[-1][name] for name in key_names)
        yield batch


def _key(rollup: Table) -> list[str]:
    return [column.name for column in rollup.primary_key.columns]


async def _copy_rollup(
    src: AsyncConnection, dst: AsyncConnection, target: Side, rollup: Table
) -> None:
    statement = target.insert(rollup)
    replace = statement.on_conflict_do_update(
        index_elements=_key(rollup),
        set_={name: statement.excluded[name] for name in MEASURES.split(", ")},
    )
    async for batch in _chunks(src, rollup, _key(rollup)):
        async with dst.begin():
            await dst.execute(replace, batch)


async def _rollup_fingerprint(conn: AsyncConnection, rollup: Table) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    async for batch in _chunks(conn, rollup, _key(rollup)):
        for row in batch:
            digest.update("|".join(_text(value) for value in row.values()).encode() + b"\n")
        count += len(batch)
    return count, digest.hexdigest()


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


async def _check_rollup(src: AsyncConnection, dst: AsyncConnection, rollup: Table) -> RollupCheck:
    source_rows, source_sum = await _rollup_fingerprint(src, rollup)
    target_rows, target_sum = await _rollup_fingerprint(dst, rollup)
    return RollupCheck(rollup.name, source_rows, target_rows, source_sum == target_sum)


async def _copy_month(
    src: AsyncConnection, dst: AsyncConnection, source: Side, target: Side, *, month: Month,
    progress: Callable[[int], None],
) -> int:  # fmt: skip
    async with dst.begin():
        created = await target.backend.partitions.ensure(dst, [month])
    target.backend.partitions.confirm(created)
    table = target.readings(month)
    stmt = target.insert(table).on_conflict_do_nothing()
    copied = 0
    async for batch in _chunks(src, source.readings(month), _READING_KEY, month):
        for row in batch:
            row.pop("id")
        async with dst.begin():
            await dst.execute(stmt, batch)
        copied += len(batch)
        progress(len(batch))
    return copied


async def _copy_dead_letters(src: AsyncConnection, dst: AsyncConnection, target: Side) -> int:
    rows = [dict(r._mapping) for r in await src.execute(select(dead_letters))]  # noqa: SLF001
    await src.commit()
    present = {
        (r.topic, r.received_at, r.payload_size)
        for r in await dst.execute(
            select(dead_letters.c.topic, dead_letters.c.received_at, dead_letters.c.payload_size)
        )
    }
    await dst.commit()
    missing = [r for r in rows if (r["topic"], r["received_at"], r["payload_size"]) not in present]
    for row in missing:
        row.pop("id")
    if missing:
        async with dst.begin():
            await dst.execute(target.insert(dead_letters), missing)
    return len(missing)


async def _fingerprint(conn: AsyncConnection, side: Side, month: Month) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    async for batch in _chunks(conn, side.readings(month), _READING_KEY, month):
        for row in batch:
            digest.update(
                f"{row['device_id']}|{row['data_type']}|{row['recorded_at'].isoformat()}|"
                f"{row['energy_amount']!r}|{row['instantaneous_power']!r}\n".encode()
            )
        count += len(batch)
    return count, digest.hexdigest()


async def _check_month(
    src: AsyncConnection, dst: AsyncConnection, source: Side, target: Side, month: Month
) -> MonthCheck:
    source_rows, source_sum = await _fingerprint(src, source, month)
    target_rows, target_sum = await _fingerprint(dst, target, month)
    return MonthCheck(month, source_rows, target_rows, source_sum == target_sum)
