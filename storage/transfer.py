"""Copying a whole meterflow database to another one (SQLite to PostgreSQL, typically).

Resumable: every row is written with ON CONFLICT DO NOTHING on its natural key (device id;
device, data type and time for readings; topic, time and size for dead letters), so a
copy that was interrupted is finished by running it again. The copy ends with a
verification: per month, the row count and a checksum over every reading's identity and
values, computed the same way on both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from partitions import Month
from storage.backend import Dialect, backend_for, insert_for
from storage.migrations import require_current
from storage.tables import dead_letters, energy_parent, iot_devices

CHUNK_ROWS = 5000
_READING_KEY = ("device_id", "data_type", "recorded_at")


@dataclass(frozen=True, slots=True)
class MonthCheck:
    month: Month
    source_rows: int
    target_rows: int
    matches: bool


@dataclass
class CopyReport:
    devices: int = 0
    readings: int = 0
    dead_letters: int = 0
    months: list[MonthCheck] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(check.matches for check in self.months)


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
    """Copy devices, every month of readings and the dead letters; then verify."""
    report = CopyReport()
    async with source.engine.connect() as src, target.engine.connect() as dst:
        await require_current(src, source.backend, source.url)
        await require_current(dst, target.backend, target.url)
        rows = [dict(r._mapping) for r in await src.execute(select(iot_devices))]  # noqa: SLF001
        await src.commit()
        if rows:
            for row in rows:
                row.pop("id")
            stmt = target.insert(iot_devices).on_conflict_do_nothing(index_elements=["device_id"])
            async with dst.begin():
                await dst.execute(stmt, rows)
        report.devices = len(rows)
        for month in sorted(source.backend.partitions.months):
            report.readings += await _copy_month(
                src, dst, source, target, month=month, progress=progress
            )
        report.dead_letters = await _copy_dead_letters(src, dst, target)
        for month in sorted(source.backend.partitions.months):
            report.months.append(await _check_month(src, dst, source, target, month))
    return report


async def _chunks(
    conn: AsyncConnection, table: Table, month: Month
) -> AsyncIterator[list[dict[str, Any]]]:
    """A month's readings in key order, CHUNK_ROWS at a time (keyset pagination)."""
    key = tuple_(*(table.c[name] for name in _READING_KEY))
    last: tuple[Any, ...] | None = None
    while True:
        query = select(table).where(
            table.c.recorded_at >= month.start, table.c.recorded_at < month.end
        )
        if last is not None:
            # Typed literals, so the time is compared in the column's own stored form.
            bound = (literal(v, table.c[n].type) for n, v in zip(_READING_KEY, last, strict=True))
            query = query.where(key > tuple_(*bound))
        rows = (await conn.execute(query.order_by(*key.clauses).limit(CHUNK_ROWS))).all()
        await conn.commit()
        if not rows:
            return
        batch = [dict(row._mapping) for row in rows]  # noqa: SLF001
        last = tuple(batch[-1][name] for name in _READING_KEY)
        yield batch


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
    async for batch in _chunks(src, source.readings(month), month):
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
    async for batch in _chunks(conn, side.readings(month), month):
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
