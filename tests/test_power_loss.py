"""Power cuts, not only process kills: the daemon's database on a disk that loses every
write not yet synced (tests/lazyfs.py), the power cut at random moments of a stream.

Whatever the daemon acknowledged must be on the disk after the cut: the broker deleted
its copy on the acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Self

import pytest

from tests.helpers import count_rows, wait_until
from tests.lazyfs import Mount, unavailable
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess
from tests.test_delivery_guarantees import Background, numbered, stored_sequence_numbers

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
]

READINGS = 8000


class PoweredMachine:
    """The daemon on a LazyFS disk: `boot` mounts and starts it, `cut` kills both at once."""

    def __init__(self, broker: Mosquitto, prefix: str, tmp_path: Path, synchronous: str) -> None:
        self.disk = tmp_path / "disk"
        self.disk.mkdir()
        self.mount = Mount(self.disk, tmp_path / "mnt")
        self.daemon = DaemonProcess(
            broker.url,
            self.mount.mountpoint / "meterflow.db",
            prefix,
            tmp_path / "daemon.log",
            METERFLOW_STORAGE__SQLITE_SYNCHRONOUS=synchronous,
        )

    @property
    def live_database(self) -> Path:
        return self.mount.mountpoint / "meterflow.db"

    def boot(self) -> None:
        self.mount.start()
        self.daemon.start()

    def cut(self) -> None:
        self.daemon.kill()
        self.mount.cut()

    def __enter__(self) -> Self:
        self.boot()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()

    def on_disk(self) -> tuple[list[int], str]:
        """After a cut: the sequence numbers stored, and SQLite's integrity check."""
        database = self.disk / "meterflow.db"
        with closing(sqlite3.connect(database)) as conn:
            [(integrity,)] = conn.execute("PRAGMA integrity_check").fetchall()
        return stored_sequence_numbers(database), integrity


async def cut_at_random(machine: PoweredMachine, publishing: Background, cuts: int) -> None:
    """Let the stream run a random while, cut, boot again: `cuts` times and until the
    stream ends. METERFLOW_CHAOS_SEED replays a run."""
    seed = int(os.environ.get("METERFLOW_CHAOS_SEED", random.randrange(2**32)))
    print(f"power-cut seed: {seed}")
    rng = random.Random(seed)
    done = 0
    while done < cuts or publishing.running:
        await asyncio.sleep(rng.uniform(0.05, 0.6))
        await asyncio.to_thread(machine.cut)
        done += 1
        await asyncio.to_thread(machine.boot)
    publishing.join()


async def test_ten_power_cuts_mid_stream_lose_nothing_acknowledged(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """synchronous = FULL (the default): after ten cuts and a last one once everything was
    stored, every reading is on the disk exactly once and the database is sound."""
    messages = numbered(prefix, READINGS, devices=100)
    with PoweredMachine(broker, prefix, tmp_path, "FULL") as machine:
        with Background(broker.port, messages, per_second=400) as publishing:
            await cut_at_random(machine, publishing, cuts=10)
        await wait_until(
            lambda: count_rows(machine.live_database) == READINGS, within=60, what="all stored"
        )
    stored, integrity = machine.on_disk()
    assert stored == list(range(READINGS))
    assert integrity == "ok"


async def test_the_same_cuts_lose_acknowledged_readings_under_synchronous_normal(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """The harness sees what it guards against: under NORMAL the readings acknowledged
    since the last checkpoint are gone after a cut, and the broker no longer has them."""
    messages = numbered(prefix, READINGS // 2, devices=100)
    with PoweredMachine(broker, prefix, tmp_path, "NORMAL") as machine:
        with Background(broker.port, messages, per_second=400) as publishing:
            await cut_at_random(machine, publishing, cuts=4)
        await asyncio.sleep(3)  # what the broker still holds, drained
    stored, integrity = machine.on_disk()
    assert len(stored) == len(set(stored)) < READINGS // 2
    assert integrity == "ok"
