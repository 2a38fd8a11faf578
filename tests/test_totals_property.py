"""Totals that check themselves: random streams of readings, delivered as devices and
brokers deliver them, leave every rollup equal to the raw readings recomputed here, the
energy equal to what the devices used, and no interval above the power bound."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitions import Month
from storage import BatchWriter, Reading, WriteBatch, backend_for_url, open_engine
from storage.counters import DEFAULT_MAX_POWER_KW, MIN_INTERVAL_S, RESOLUTION_KWH
from tests.databases import Database, as_utc, partition_tables

T0 = datetime(2026, 3, 31, 21, 0, tzinfo=UTC)  # a day's and a month's end ahead
QUARTER = timedelta(minutes=15)
MAX_KW = DEFAULT_MAX_POWER_KW["smart_meter"]
PLUG, METER = "plug-1", "meter-2"


@dataclass
class Stream:
    """What the devices did, the messages a broker delivered of it, and whether March is
    archived and restored afterwards."""

    batches: list[list[Reading]] = field(default_factory=list)
    used_kwh: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    archive_and_restore: bool = False


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """A counter plug (glitches to 0, resets, an impossible jump, long gaps) and a meter
    stating its energy per reading; in batches, some redelivered, the meter's shuffled."""
    stream = Stream()
    plug: list[Reading] = []
    meter: list[Reading] = []
    at, counter, offset = T0, draw(st.floats(10, 1000)), 0.0
    for step in range(draw(st.integers(2, 40))):
        gap = timedelta(minutes=draw(st.sampled_from([1, 5, 7, 15, 40, 180, 26 * 60])))
        at += gap + timedelta(seconds=draw(st.integers(0, 59)))
        used = round(draw(st.floats(0, 3)) * gap.total_seconds() / 3600, 6)
        event = draw(st.sampled_from(["advance"] * 6 + ["glitch", "reset", "jump"]))
        # 0 once, then the counter as it was. A counter at 0 that says 0 again has not
        # glitched: it has stood still, and a device may not then claim minutes' energy
        # in 20 s (the power bound), so the model draws no glitch there.
        if event == "glitch" and counter + offset > 0:
            plug.append(_counted(at - timedelta(seconds=20), 0.0))
        if event == "reset" and counter >= 100:  # restarts from zero, and goes on
            counter, offset, used = 0.0, 0.0, min(used, 1.0)
        if event == "jump":  # a value no device could reach; the counter goes on from it
            offset += 10_000.0
        counter += used
        # The first value counts nothing (its interval is unknown), nor does the jump.
        if step > 0 and event != "jump":
            stream.used_kwh[PLUG] += used
        plug.append(_counted(at, counter + offset))
        if event == "reset":  # a second value to show it was a reset
            at += timedelta(minutes=1)
            plug.append(_counted(at, counter + offset))
        energy = round(draw(st.floats(0, 0.5)), 6)
        meter.append(Reading("t", METER, "smart_meter", at, energy, energy * 4))
        stream.used_kwh[METER] += energy
    stream.archive_and_restore = draw(st.booleans())
    rng = random.Random(draw(st.integers(0, 2**32)))
    rng.shuffle(meter)  # late and out-of-order readings
    size = draw(st.integers(1, 12))
    for start in range(0, max(len(plug), len(meter)), size):
        stream.batches.append([*plug[start : start + size], *meter[start : start + size]])
        if draw(st.booleans()):
            stream.batches.append(rng.choice(stream.batches))  # a redelivery
    return stream


def _counted(at: datetime, kwh: float) -> Reading:
    return Reading("t", PLUG, "smart_meter", at, None, 1.0, counter="import", counter_kwh=kwh)


def store(database: Database, stream: Stream) -> None:
    async def go() -> None:
        engine = open_engine(database.url)
        async with BatchWriter(engine, url=database.url) as writer:
            for batch in stream.batches:
                await writer.write(WriteBatch(batch))
        if stream.archive_and_restore:
            months = backend_for_url(database.url).partition_store(engine, database.url)
            with tempfile.TemporaryDirectory() as directory:
                archive = await months.archive(Month(2026, 3), Path(directory))
                await months.restore(archive)
        await engine.dispose()

    asyncio.run(go())


def empty(database: Database) -> None:
    """The schema, without a row: Hypothesis runs many examples in one test's database."""
    store(database, Stream())
    tables = ["energy_15min", "energy_hourly", "energy_daily", "energy_monthly",
              "meter_counters", "iot_devices", "device_owners"]  # fmt: skip
    for table in [*tables, *partition_tables(database)]:
        database.execute(f"DELETE FROM {table}")


Key = tuple[str, str, datetime]
Totals = dict[Key, list[float]]  # energy, peak power (-1: none), power values, readings


def _floor(at: datetime) -> datetime:
    return at.replace(minute=at.minute // 15 * 15, second=0, microsecond=0)


def _pieces(
    recorded: datetime, start: datetime | None, energy: float | None
) -> Iterator[tuple[datetime, float]]:
    """A reading's energy per quarter hour, its own quarter hour last."""
    own = _floor(recorded)
    if start is None or not energy or start >= own:
        yield own, energy or 0.0
        return
    whole = (recorded - start).total_seconds()
    quarter = _floor(start)
    while quarter < own:
        yield quarter, energy * ((quarter + QUARTER) - max(start, quarter)).total_seconds() / whole
        quarter += QUARTER
    yield own, energy * (recorded - own).total_seconds() / whole


BUCKETS: dict[str, tuple[str, Callable[[datetime], datetime]]] = {
    "energy_15min": ("quarter_hour", lambda q: q),
    "energy_hourly": ("hour", lambda q: q.replace(minute=0)),
    "energy_daily": ("day", lambda q: q.replace(hour=0, minute=0)),
    "energy_monthly": ("month", lambda q: q.replace(day=1, hour=0, minute=0)),
}


def recomputed(database: Database) -> dict[str, Totals]:
    """Every rollup's rows, from the stored readings, spread here by their intervals."""
    rows = database.query(
        "SELECT device_id, data_type, recorded_at, interval_start, energy_amount, "
        "instantaneous_power FROM energy_data"
    )
    out: dict[str, Totals] = {table: {} for table in BUCKETS}
    for device, data_type, recorded, start, energy, power in rows:
        recorded_at = as_utc(recorded)
        for quarter, share in _pieces(recorded_at, start and as_utc(start), energy):
            own = quarter == _floor(recorded_at)
            for table, (_, bucket_of) in BUCKETS.items():
                totals = out[table].setdefault(
                    (device, data_type, bucket_of(quarter)), [0, -1, 0, 0]
                )
                totals[0] += share
                if own:
                    totals[1] = max(totals[1], -1 if power is None else power)
                    totals[2] += power is not None
                    totals[3] += 1
    return out


def stored(database: Database, table: str) -> Totals:
    column, _ = BUCKETS[table]
    rows = database.query(
        f"SELECT device_id, data_type, {column}, energy_kwh, power_max, power_count, readings "
        f"FROM {table}"
    )
    return {
        (device, data_type, as_utc(bucket)): [energy, -1 if peak is None else peak, count, n]
        for device, data_type, bucket, energy, peak, count, n in rows
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=streams())
def test_every_rollup_equals_its_readings_and_every_total_what_was_used(
    database: Database, stream: Stream
) -> None:
    """Duplicates, redeliveries, late and out-of-order readings, glitches, resets, an
    impossible jump, gaps across a day's and a month's end, and March archived and
    restored: each rollup row is its
    readings' spread energy, peak, power values and count; each device's energy is what
    it used; no interval holds more than the power bound allows."""
    empty(database)
    store(database, stream)
    expected = recomputed(database)
    for table in BUCKETS:
        got = stored(database, table)
        assert got.keys() == expected[table].keys(), table
        for key, (energy, peak, count, readings) in expected[table].items():
            assert got[key][1:] == [peak, count, readings], (table, key)
            assert got[key][0] == pytest.approx(energy, rel=1e-9, abs=1e-9), (table, key)
    for device, used in stream.used_kwh.items():
        [(total,)] = database.query(
            f"SELECT coalesce(sum(energy_amount), 0) FROM energy_data WHERE device_id = '{device}'"
        )
        assert total == pytest.approx(used, abs=1e-6), device
    for recorded, start, energy in database.query(
        "SELECT recorded_at, interval_start, energy_amount FROM energy_data "
        "WHERE interval_start IS NOT NULL"
    ):
        hours = max((as_utc(recorded) - as_utc(start)).total_seconds(), MIN_INTERVAL_S) / 3600
        assert energy <= MAX_KW * hours + RESOLUTION_KWH
