"""One reading from a device's values that arrive one per message (`merge_window_ms`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.batch import Batcher
from ingest.decode import TopicPattern
from ingest.delivery import Delivery
from ingest.merge import MergeWindows, merged
from meterflow.publisher import Publisher
from storage import Reading
from tests.helpers import make_settings, query, running_daemon, wait_until
from tests.mosquitto import Mosquitto

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TOPIC = "solar/{device_id}/0/{field}"


def value(
    device: str,
    field: str,
    *,
    power_kw: float | None = None,
    voltage: float | None = None,
    current: float | None = None,
    counter_kwh: float | None = None,
) -> Reading:
    return Reading(
        f"solar/{device}/0/{field}", device, "solar_panel", NOW, None, power_kw,
        voltage=voltage, current=current, counter_kwh=counter_kwh,
        counter=field if counter_kwh is not None else None,
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delivery(mid: int) -> Delivery:
    return Delivery("t", b"", mid, 1)


async def batch_of(clock: Clock, *steps: tuple[float, Reading]) -> list[Reading]:
    """Readings added `after` seconds apart to a batcher merging within 0.2 s."""
    batcher = Batcher(100, 0.05, clock, MergeWindows([(TopicPattern(TOPIC), 0.2)]))
    for mid, (after, reading) in enumerate(steps, 1):
        clock.now += after
        batcher.add([reading], delivery(mid))
    batcher.close()
    batch = await batcher.next_batch()
    assert batch is not None
    assert batch.messages == len(steps)  # every message acknowledged with the batch
    return batch.readings


async def test_a_cycle_of_values_within_the_window_becomes_one_reading() -> None:
    """OpenDTU-style: power, voltage, current and yieldtotal a millisecond apart."""
    readings = await batch_of(
        Clock(),
        (0, value("inv-1", "power", power_kw=0.7125)),
        (0.001, value("inv-1", "voltage", voltage=31.2)),
        (0.001, value("inv-1", "current", current=2.1)),
        (0.001, value("inv-1", "yieldtotal", counter_kwh=13.338)),
    )
    [reading] = readings
    assert (reading.power_kw, reading.voltage, reading.current, reading.counter_kwh) == (
        0.7125, 31.2, 2.1, 13.338,
    )  # fmt: skip


async def test_values_after_the_window_or_repeating_a_measure_or_of_another_device_stay_apart() -> (
    None
):
    readings = await batch_of(
        Clock(),
        (0, value("inv-1", "power", power_kw=0.7)),
        (0.001, value("inv-2", "power", power_kw=0.3)),
        (0.001, value("inv-1", "power", power_kw=0.8)),  # power again: a new reading
        (0.001, value("inv-1", "voltage", voltage=31.0)),  # joins the second inv-1 reading
        (0.5, value("inv-1", "current", current=2.0)),  # past the window
    )
    assert [(r.device_id, r.power_kw, r.voltage, r.current) for r in readings] == [
        ("inv-1", 0.7, None, None),
        ("inv-2", 0.3, None, None),
        ("inv-1", 0.8, 31.0, None),
        ("inv-1", None, None, 2.0),
    ]


async def test_a_batch_with_an_open_window_is_not_due_before_the_window_ends() -> None:
    clock = Clock()
    batcher = Batcher(100, 0.05, clock, MergeWindows([(TopicPattern(TOPIC), 0.2)]))
    batcher.add([value("inv-1", "power", power_kw=0.7)], delivery(1))
    clock.now += 0.1  # past max_delay, within the merge window
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await batcher.next_batch()
    clock.now += 0.11
    assert await batcher.next_batch() is not None


def test_only_configured_topics_merge() -> None:
    windows = MergeWindows([(TopicPattern(TOPIC), 0.2)])
    assert windows.of("solar/inv-1/0/power") == 0.2
    assert windows.of("tele/plug/SENSOR") is None
    assert not MergeWindows([])


def test_a_merge_keeps_the_first_time_and_joins_metadata() -> None:
    first = value("inv-1", "power", power_kw=0.7)
    later = Reading("solar/inv-1/0/yieldtotal", "inv-1", "solar_panel",
                    datetime(2026, 11, 30, 12, 0, 0, 1, tzinfo=UTC), None, None,
                    counter="yieldtotal", counter_kwh=13.3, metadata={"x": 1})  # fmt: skip
    combined = merged(first, later)
    assert combined is not None
    assert (combined.recorded_at, combined.counter, combined.metadata) == (
        NOW, "yieldtotal", {"x": 1},
    )  # fmt: skip


OPENDTU_MERGED: dict[str, Any] = {
    "name": "opendtu",
    "topics": ["solar/{device_id}/0/{field}"],
    "device_type": "solar_panel",
    "merge_window_ms": 300,
    "fields": {
        "yieldtotal": {"measure": "energy", "unit": "kWh", "cumulative": True},
        "power": {"measure": "power", "unit": "W"},
        "voltage": {"measure": "voltage", "unit": "V"},
        "current": {"measure": "current", "unit": "A"},
    },
}


@pytest.mark.mqtt
async def test_three_cycles_of_four_messages_are_three_rows_end_to_end(
    broker: Mosquitto, publisher: Publisher, db_path: Path
) -> None:
    """Through a real broker: each cycle's four numbers are one row; energy from the
    counter, nothing lost, nothing NULL-only."""
    settings = make_settings(
        broker.url, db_path, "unused",
        **{"decoders.enabled": ["opendtu"], "decoders.generic": [OPENDTU_MERGED]},
    )  # fmt: skip
    async with running_daemon(settings) as daemon:
        for cycle, total in enumerate((100.0, 100.2, 100.5)):
            for field, number in (("power", 700 + cycle), ("voltage", 31.0),
                                  ("current", 2.2), ("yieldtotal", total)):  # fmt: skip
                publisher.publish(f"solar/114190641177/0/{field}", str(number).encode())
            await asyncio.to_thread(publisher.wait_acknowledged)
            await asyncio.sleep(0.5)
        await wait_until(lambda: daemon.stats.received == 12, what="12 messages")
        await wait_until(lambda: daemon.stats.stored == 3, what="3 rows")
    rows = query(
        db_path,
        "SELECT instantaneous_power, voltage, current, energy_amount FROM energy_data "
        "ORDER BY recorded_at",
    )
    assert [row[3] for row in rows] == [None, pytest.approx(0.2), pytest.approx(0.3)]
    assert [row[:3] for row in rows] == [
        pytest.approx((0.7, 31.0, 2.2)),
        pytest.approx((0.701, 31.0, 2.2)),
        pytest.approx((0.702, 31.0, 2.2)),
    ]
