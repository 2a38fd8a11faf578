"""A full disk under the SQLite file: the daemon stops acknowledging, waits, and catches up."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import count_rows, make_settings, running_daemon, wait_until
from tests.mosquitto import Mosquitto
from tests.test_delivery_guarantees import numbered, publish_in_thread, stored_sequence_numbers

pytestmark = pytest.mark.mqtt


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of our own, so the test can fill it without touching the machine.

    Room for the database and a WAL of up to 1000 pages (SQLite checkpoints there).
    """
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses another byte."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler


async def test_full_disk_stops_acks_reports_unready_and_resumes_when_space_returns(
    broker: Mosquitto, small_disk: Path, prefix: str
) -> None:
    """Commits fail with SQLITE_FULL: nothing is acked or lost; after cleanup all land."""
    db_path = small_disk / "data" / "meterflow.db"
    settings = make_settings(
        broker.url,
        db_path,
        prefix,
        **{"batch.max_messages": 100, "storage.retry_max_s": 0.2, "storage.unready_after_s": 0.3},
    )
    messages = numbered(prefix, 3000)
    async with running_daemon(settings) as daemon:
        await asyncio.to_thread(publish_in_thread, broker.port, messages[:200])
        await wait_until(lambda: count_rows(db_path) == 200, what="the first 200 rows")
        filler = fill(small_disk)
        await asyncio.to_thread(publish_in_thread, broker.port, messages[200:])
        await wait_until(lambda: not daemon.ready, what="the daemon to report unready")
        stalled_at = count_rows(db_path)
        await asyncio.sleep(0.5)
        assert count_rows(db_path) == stalled_at
        filler.unlink()
        await wait_until(lambda: count_rows(db_path) == 3000, within=30, what="all 3000 rows")
        await wait_until(lambda: daemon.ready, what="the daemon to report ready again")
    assert stored_sequence_numbers(db_path) == list(range(3000))
