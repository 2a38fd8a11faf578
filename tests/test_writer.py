"""The single writer against both backends: a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import (
    Backoff,
    BatchWriter,
    DeadLetter,
    Reading,
    SQLiteOptions,
    WriteBatch,
    open_engine,
    registry,
)
from storage.records import READING_COLUMNS, ROW_COLUMNS, reading_rows
from storage.registry import Registration
from storage.sqlite import (
    CHUNK_ROWS,
    OTHER_MONTH_CHUNK_ROWS,
    batch_rows,
    chunks,
    filled_columns,
)
from tests.databases import (
    Database,
    SQLiteDatabase,
    as_utc,
    count_readings,
    partition_tables,
)

T0 = datetime(2026, 3, 31, 23, 59, 58, tzinfo=UTC)


def reading(device: str, at: datetime, energy: float = 0.1, **extra: object) -> Reading:
    return Reading("t", device, "smart_meter", at, energy, 1.0, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def writer(database: Database) -> AsyncIterator[BatchWriter]:
    engine = open_engine(database.url, SQLiteOptions(busy_timeout_ms=100))
    async with BatchWriter(engine, backoff=Backoff(initial=0.05, cap=0.2)) as batch_writer:
        yield batch_writer
    await engine.dispose()


async def test_duplicates_in_and_across_batches_are_counted_not_stored(
    writer: BatchWriter, database: Database
) -> None:
    """A reading seen twice in one batch and again in the next is one row."""
    first = await writer.write(WriteBatch([reading("a", T0), reading("a", T0), reading("b", T0)]))
    again = await writer.write(WriteBatch([reading("a", T0)]))
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (again.inserted, again.duplicates) == (0, 1)
    assert count_readings(database) == 2


async def test_refused_reading_becomes_a_dead_letter_and_the_rest_of_its_batch_is_kept(
    writer: BatchWriter, database: Database
) -> None:
    """A row the database refuses (here a CHECK) is isolated; its batch-mates are stored."""
    batch = WriteBatch([reading("a", T0), reading("b", T0, energy=-1.0), reading("c", T0)])
    result = await writer.write(batch)
    assert (result.inserted, result.dead_letters) == (2, 1)
    assert sorted(d for (d,) in database.query("SELECT device_id FROM energy_data")) == ["a", "c"]
    [(reason,)] = database.query("SELECT reason FROM dead_letters")
    assert reason.startswith("database refused the reading:")
    assert "check constraint" in reason.lower()


async def test_months_get_partitions_and_a_restarted_writer_keeps_them(
    database: Database,
) -> None:
    """Readings across three months land in three partitions, across writer restarts."""
    for at in (T0, T0 + timedelta(seconds=5), T0 + timedelta(days=40)):
        engine = open_engine(database.url)
        async with BatchWriter(engine) as writer:
            await writer.write(WriteBatch([reading("a", at)]))
        await engine.dispose()
    months = Counter(
        f"{as_utc(at):%Y-%m}" for (at,) in database.query("SELECT recorded_at FROM energy_data")
    )
    assert months == {"2026-03": 1, "2026-04": 1, "2026-05": 1}
    assert partition_tables(database) == {
        "energy_data_2026_03",
        "energy_data_2026_04",
        "energy_data_2026_05",
    }


async def test_a_batch_reaching_into_months_without_partitions_creates_and_names_them(
    writer: BatchWriter, database: Database
) -> None:
    """A batch whose readings fall into months without partitions (history, a month's
    first readings) has them created, names them in its result, and stores each reading
    once, counted once in every month's rollup."""
    times = [T0 + timedelta(days=days, minutes=m) for days in (0, 40, 70) for m in range(100)]
    result = await writer.write(WriteBatch([reading("a", at, 0.5) for at in times]))
    months = Counter(f"{at:%Y_%m}" for at in times)
    assert sorted(result.created_partitions) == [f"energy_data_{m}" for m in sorted(months)]
    assert (result.inserted, result.duplicates) == (len(times), 0)
    stored: Counter[str] = Counter()
    energy: Counter[str] = Counter()
    for at, kwh in database.query("SELECT recorded_at, energy_amount FROM energy_data"):
        stored[f"{as_utc(at):%Y_%m}"] += 1
        energy[f"{as_utc(at):%Y_%m}"] += kwh
    rolled = {
        f"{as_utc(month):%Y_%m}": (count, kwh)
        for month, count, kwh in database.query(
            "SELECT month, readings, energy_kwh FROM energy_monthly"
        )
    }
    assert stored == months
    assert rolled == {month: (n, 0.5 * n) for month, n in months.items()}
    assert energy == {month: 0.5 * n for month, n in months.items()}


async def test_dead_letters_commit_with_the_batch(writer: BatchWriter, database: Database) -> None:
    """Rejects arriving with readings are stored in the same transaction as the readings."""
    letter = DeadLetter("t", b"\x00\xff", "bad", T0, payload_size=9000)
    result = await writer.write(WriteBatch([reading("a", T0)], [letter]))
    assert (result.inserted, result.dead_letters) == (1, 1)
    [(body, size, reason)] = database.query(
        "SELECT payload, payload_size, reason FROM dead_letters"
    )
    assert (bytes(body), size, reason) == (b"\x00\xff", 9000, "bad")


async def test_last_seen_and_battery_follow_the_newest_reading_across_batches(
    writer: BatchWriter, database: Database
) -> None:
    """A late, older reading moves neither last_seen nor the battery level back."""
    await writer.write(WriteBatch([reading("a", T0, battery_pct=80.0)]))
    await writer.write(
        WriteBatch(
            [
                reading("a", T0 - timedelta(hours=1), battery_pct=95.0),
                reading("a", T0 + timedelta(seconds=1)),
            ]
        )
    )
    [(last_seen, battery)] = database.query("SELECT last_seen, battery_level FROM iot_devices")
    assert as_utc(last_seen) == T0 + timedelta(seconds=1)
    assert battery == 80.0


async def test_readings_carry_their_registered_owner_in_every_kind_of_batch(
    writer: BatchWriter, database: Database
) -> None:
    """user_id comes from the registry, whether a batch creates its month or goes the plain way."""

    async def register_owner(conn: AsyncConnection) -> None:
        await registry.register(conn, [Registration("m", "smart_meter", user_id="u-7")], T0)

    await writer.transaction(register_owner)
    await writer.write(WriteBatch([reading("m", T0), reading("stranger", T0)]))
    await writer.write(WriteBatch([reading("m", T0 + timedelta(seconds=1))]))
    letter = DeadLetter("t", b"?", "bad", T0)
    await writer.write(WriteBatch([reading("m", T0 + timedelta(seconds=2))], [letter]))
    rows = database.query("SELECT device_id, user_id FROM energy_data ORDER BY recorded_at")
    assert sorted(rows) == [("m", "u-7")] * 3 + [("stranger", None)]


async def test_batches_submitted_back_to_back_commit_in_order_each_with_its_result(
    writer: BatchWriter, database: Database
) -> None:
    """Queued behind one another, batches commit in submission order: a reading repeated
    in a later batch is that batch's duplicate."""
    await writer.write(WriteBatch([reading("a", T0)]))
    later = [T0 + timedelta(seconds=n) for n in range(1, 4)]
    futures = [
        await writer.submit(WriteBatch([reading("a", later[0]), reading("b", later[0])])),
        await writer.submit(WriteBatch([reading("a", later[0]), reading("a", later[1])])),
        await writer.submit(WriteBatch([reading("c", later[2])])),
    ]
    results = [await future for future in futures]
    assert [(r.inserted, r.duplicates) for r in results] == [(2, 0), (1, 1), (1, 0)]
    assert count_readings(database) == 5


async def test_maintenance_waits_for_the_batches_queued_before_it(
    writer: BatchWriter, database: Database
) -> None:
    """Partition maintenance (and upkeep) start only once queued batches have committed."""
    await writer.write(WriteBatch([reading("a", T0)]))
    batch = WriteBatch([reading(f"q-{n}", T0 + timedelta(seconds=1)) for n in range(500)])
    queued = await writer.submit(batch)
    async with writer.paused():
        assert count_readings(database) == 501
    assert (await queued).inserted == 500


async def test_a_refused_reading_in_a_queued_batch_is_isolated_and_later_batches_commit(
    writer: BatchWriter, database: Database
) -> None:
    """A batch that fails after being queued is taken over by the general path; the batch
    queued behind it commits as well."""
    await writer.write(WriteBatch([reading("a", T0)]))
    at = T0 + timedelta(seconds=1)
    refused = await writer.submit(WriteBatch([reading("a", at), reading("b", at, energy=-1.0)]))
    behind = await writer.submit(WriteBatch([reading("c", at)]))
    first, second = await refused, await behind
    assert (first.inserted, first.dead_letters, second.inserted) == (1, 1, 1)
    assert sorted(d for (d,) in database.query("SELECT device_id FROM energy_data")) == [
        "a",
        "a",
        "c",
    ]


async def test_a_failing_upkeep_job_is_its_callers_error_and_the_writer_goes_on(
    writer: BatchWriter, database: Database
) -> None:
    """An upkeep transaction that raises gives its caller the error and rolls back; the
    batches queued before and after it commit."""
    before = await writer.submit(WriteBatch([reading("a", T0)]))

    async def broken(conn: AsyncConnection) -> None:
        await registry.register(conn, [Registration("half-done", "smart_meter")], T0)
        raise ValueError("upkeep bug")

    with pytest.raises(ValueError, match="upkeep bug"):
        await writer.transaction(broken)
    after = await writer.write(WriteBatch([reading("b", T0)]))
    assert ((await before).inserted, after.inserted) == (1, 1)
    assert database.query("SELECT count(*) FROM iot_devices WHERE device_id = 'half-done'") == [
        (0,)
    ]
    assert count_readings(database) == 2


async def test_a_batch_whose_submitter_gave_up_before_its_turn_is_not_stored(
    writer: BatchWriter, database: Database
) -> None:
    """Cancelled while still queued (the broker went away), a batch is dropped unstored:
    its messages were never acknowledged, so the broker redelivers them."""
    async with writer.paused():
        dropped = await writer.submit(WriteBatch([reading("gone", T0)]))
        kept = await writer.submit(WriteBatch([reading("kept", T0)]))
        dropped.cancel()
    assert (await kept).inserted == 1
    assert database.query("SELECT device_id FROM energy_data") == [("kept",)]


async def test_every_value_a_reading_carries_is_read_back_as_it_was_written(
    writer: BatchWriter, database: Database
) -> None:
    """Any mix of present and missing values, in batches that create a month and batches
    that go the plain way, comes back from energy_data exactly; so do values no reading of
    its batch has (the insert leaves those columns out)."""
    rng = random.Random(8)
    fields = ["energy", "power", "voltage", "current", "battery", "irradiance", "panel", "meta"]
    absent: set[str] = set()

    def maybe(field: str, low: float, high: float) -> float | None:
        if field in absent or rng.random() < 0.4:
            return None
        return round(rng.uniform(low, high), 3)

    batches = []
    for number in range(12):
        start = T0 + timedelta(days=20 * (number // 6), minutes=number)
        # Half the batches lack some fields in every reading.
        absent = set(rng.sample(fields, rng.randint(1, 7))) if number % 2 else set()
        batches.append(
            [
                Reading(
                    "t",
                    f"d-{n:02d}",
                    rng.choice(["smart_meter", "solar_panel"]),
                    start + timedelta(seconds=n),
                    maybe("energy", 0, 5),
                    maybe("power", 0, 9),
                    voltage=maybe("voltage", 200, 250),
                    current=maybe("current", 0, 40),
                    battery_pct=maybe("battery", 0, 100),
                    irradiance_wm2=maybe("irradiance", 0, 1000),
                    panel_temp_c=maybe("panel", -20, 80),
                    quality=rng.choice(["good", "estimated"]),
                    metadata=None
                    if "meta" in absent or rng.random() < 0.5
                    else {"n": n, "tag": "x"},
                )
                for n in range(40)
            ]
        )
    for batch in batches:
        await writer.write(WriteBatch(batch))
    rows = database.query(
        "SELECT device_id, recorded_at, energy_amount, instantaneous_power, voltage, current, "
        "battery_pct, irradiance_wm2, panel_temp_c, quality, metadata FROM energy_data"
    )
    stored = {
        (device, as_utc(at)): (*values, quality, _json(meta))
        for device, at, *values, quality, meta in rows
    }
    expected = {
        (r.device_id, r.recorded_at): (
            r.energy_kwh,
            r.power_kw,
            r.voltage,
            r.current,
            r.battery_pct,
            r.irradiance_wm2,
            r.panel_temp_c,
            r.quality,
            r.metadata,
        )
        for batch in batches
        for r in batch
    }
    assert stored == expected


def _json(value: object) -> object:
    """A JSON column as read back: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


async def test_locked_sqlite_database_is_waited_for_and_nothing_is_dropped(
    tmp_path: Path,
) -> None:
    """Another connection holding SQLite's exclusive lock past busy_timeout delays the batch."""
    database = SQLiteDatabase(tmp_path / "data" / "meterflow.db")
    engine = open_engine(database.url, SQLiteOptions(busy_timeout_ms=100))
    async with BatchWriter(engine, backoff=Backoff(initial=0.05, cap=0.2)) as writer:
        await writer.write(WriteBatch([reading("a", T0)]))
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(database.path, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(10)
            conn.execute("COMMIT")
            conn.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        assert await asyncio.to_thread(locked.wait, 5)
        write = asyncio.create_task(writer.write(WriteBatch([reading("b", T0)])))
        await asyncio.sleep(0.6)
        assert not write.done()
        assert writer.failing_since is not None
        release.set()
        async with asyncio.timeout(10):
            result = await write
        holder.join()
    await engine.dispose()
    assert result.inserted == 1
    assert writer.failing_since is None
    assert count_readings(database) == 2


async def test_a_write_cancelled_anywhere_leaves_the_writer_able_to_commit_the_next(
    writer: BatchWriter, database: Database
) -> None:
    """Cancelled mid-transaction (the broker went away), the writer still commits what follows.

    The daemon's task group cancels a write in progress when the broker connection drops;
    the database connection under the writer may be replaced then, and must be as usable.
    A write cancelled while its COMMIT runs may still have committed: its messages were
    not acknowledged, and their redelivery is a duplicate, so that is not checked here.
    """
    for steps in range(40):
        at = T0 + timedelta(minutes=steps)
        cancelled = asyncio.create_task(writer.write(WriteBatch([reading("c", at)])))
        for _ in range(steps):
            await asyncio.sleep(0)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        result = await writer.write(WriteBatch([reading("n", at)]))
        assert result.inserted == 1, f"after a cancel at step {steps}"
    assert database.query("SELECT count(*) FROM energy_data WHERE device_id = 'n'") == [(40,)]


def test_sqlite_batch_rows_follow_the_reading_columns_but_the_owner() -> None:
    """A SQLite batch row is each reading's row as both backends send it: in READING_COLUMNS
    order, bar user_id, which the insert looks up; time and metadata as SQLite text."""
    at = datetime(2026, 3, 31, 23, 59, 58, 123000, tzinfo=UTC)
    solar = Reading(
        "t", "pv-1", "solar_panel", at, 0.5, 2.0, 230.0, 8.7, 55.0, 800.0, 41.5, "estimated",
        {"seq": 7, "nested": [1, {"x": None}]},
    )  # fmt: skip
    [row] = batch_rows([solar])
    [as_sent] = reading_rows([solar], {at: at})
    expected = list(as_sent)
    expected[ROW_COLUMNS.index("recorded_at")] = "2026-03-31 23:59:58.123000"
    assert READING_COLUMNS[1:] == ROW_COLUMNS
    metadata = ROW_COLUMNS.index("metadata")
    assert json.loads(str(row[metadata])) == solar.metadata
    assert list(row[:metadata]) == expected[:metadata]


def test_sqlite_inserts_bind_only_the_columns_some_row_fills() -> None:
    """A column no row of a batch fills is left out of the insert (NULL in the table);
    one that any row fills is bound for every row; the key and quality always are."""
    rows = [
        ("m-1", "consumption", 0.5, None, None, None, None, None, None, "t1", "good", None),
        ("m-2", "consumption", None, None, 230.0, None, None, None, None, "t2", "good", None),
    ]
    filled = [ROW_COLUMNS[index] for index in filled_columns(rows)]
    assert filled == ["device_id", "data_type", "energy_amount", "voltage", "recorded_at",
                      "quality"]  # fmt: skip


def test_sqlite_batch_rows_come_in_key_order_keeping_equal_keys_in_batch_order() -> None:
    """Rows are sorted by (device, data type, time), so the unique index is walked in order;
    of two equal keys the one received first stays first, and is the one stored."""
    late, early = T0 + timedelta(seconds=1), T0
    rows = batch_rows(
        [reading("b", early, 1.0), reading("a", late, 2.0), reading("a", early, 3.0),
         reading("a", late, 4.0)]
    )  # fmt: skip
    energy = ROW_COLUMNS.index("energy_amount")
    in_order = [("a", 3.0), ("a", 2.0), ("a", 4.0), ("b", 1.0)]
    assert [(row[0], row[energy]) for row in rows] == in_order


@pytest.mark.parametrize("largest", [CHUNK_ROWS, OTHER_MONTH_CHUNK_ROWS])
@pytest.mark.parametrize("rows", [0, 1, 7, 1024, 1025, 2500])
def test_a_batch_is_cut_into_statements_of_a_few_sizes_only(rows: int, largest: int) -> None:
    """Every row goes in once and in order, in chunks of the largest size or a smaller
    power of two, so SQLite prepares each statement text once and reuses it."""
    sent = [(n,) for n in range(rows)]
    pieces = list(chunks(sent, largest))
    assert [row for piece in pieces for row in piece] == sent
    sizes = [len(piece) for piece in pieces]
    assert all(size <= largest and size & (size - 1) == 0 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)


async def test_a_batch_larger_than_one_statement_keeps_the_first_of_a_split_duplicate(
    writer: BatchWriter, database: Database
) -> None:
    """A batch of several statements' worth of rows stores each reading once, and the
    rollups count it once, when two equal keys land in different statements."""
    times = [T0 + timedelta(seconds=n) for n in range(CHUNK_ROWS + 100)]
    batch = [reading("a", at, 0.5) for at in times]
    batch.append(reading("a", times[CHUNK_ROWS - 1], 5.0))
    result = await writer.write(WriteBatch(batch))
    assert (result.inserted, result.duplicates) == (len(times), 1)
    stored = [(len(times), 0.5 * len(times))]
    assert database.query("SELECT count(*), sum(energy_amount) FROM energy_data") == stored
    assert database.query("SELECT sum(readings), sum(energy_kwh) FROM energy_daily") == stored
