"""Flood: publish far faster than a slowed daemon can commit, and watch its memory.

    python -m bench.flood [--seconds 60] [--hog 0.975]

Another SQLite connection holds the write lock for `--hog` of every 2 s, so the daemon
commits about one batch per period; the publisher runs flat out for `--seconds`. Prints
the daemon's RSS over time, its peak against the README's bound, whether it stayed ready,
how long the backlog took to drain once the slowdown ended, and rows lost (must be 0).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.workload import workload
from meterflow.publisher import Publisher
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess

RSS_BOUND_MIB = 120


def hog_lock(db: Path, share: float, stop: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    while not stop.is_set():
        try:
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            continue
        stop.wait(2.0 * share)
        conn.execute("COMMIT")
        time.sleep(2.0 * (1 - share))
    conn.close()


def publish_for(port: int, seconds: float, published: list[int]) -> None:
    deadline = time.monotonic() + seconds
    with Publisher("127.0.0.1", port) as publisher:
        for topic, body in workload("flood", 10_000_000, 1000):
            if time.monotonic() > deadline:
                break
            publisher.publish(topic, body)
            published[0] += 1
        publisher.wait_acknowledged(timeout=600)


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM energy_data").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hog", type=float, default=0.975, help="share of time locked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterflow-flood-") as scratch:
        root = Path(scratch)
        with Mosquitto(root / "mosquitto") as broker:
            db = root / "meterflow.db"
            daemon = DaemonProcess(broker.url, db, "flood", root / "daemon.log",
                                   METERFLOW_BATCH__MAX_MESSAGES="5000")  # fmt: skip
            with daemon:
                process = psutil.Process(daemon.pid)
                stop = threading.Event()
                hog = threading.Thread(target=hog_lock, args=(db, args.hog, stop))
                published = [0]
                publisher = threading.Thread(
                    target=publish_for, args=(broker.port, args.seconds, published)
                )
                hog.start()
                publisher.start()
                started, peak = time.monotonic(), 0.0
                samples: list[tuple[float, float, int, int]] = []
                while time.monotonic() - started < args.seconds:
                    time.sleep(0.5)
                    rss = process.memory_info().rss / 2**20
                    peak = max(peak, rss)
                    samples.append((time.monotonic() - started, rss, published[0], count(db)))
                stop.set()
                hog.join()
                drain_started = time.monotonic()
                while publisher.is_alive() or count(db) < published[0]:
                    peak = max(peak, process.memory_info().rss / 2**20)
                    time.sleep(0.2)
                drained = time.monotonic() - drain_started
                readiness = [json.loads(line).get("ready") for line in daemon.log().splitlines()
                             if '"summary"' in line]  # fmt: skip
            stored = count(db)
    print("  t(s)   RSS MiB   published      stored")
    for at, rss, sent, kept in samples[:: max(1, len(samples) // 15)]:
        print(f"{at:6.1f} {rss:9.1f} {sent:11,} {kept:11,}")
    lost = published[0] - stored
    print(f"published {published[0]:,} in {args.seconds:.0f} s with commits slowed "
          f"({args.hog:.1%} of the time locked); stored {stored:,}; lost {lost}")  # fmt: skip
    print(
        f"peak RSS {peak:.1f} MiB (README bound {RSS_BOUND_MIB} MiB); backlog drained in "
        f"{drained:.1f} s; summaries not ready: {readiness.count(False)} of {len(readiness)}"
    )


if __name__ == "__main__":
    main()
