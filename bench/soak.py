"""Soak: a steady stream for minutes while the daemon is killed and the broker restarted.

    python -m bench.soak [--seconds 600] [--rate 1000] [--seed N]

Publishes numbered readings stamped with the time of publishing, SIGKILLs and restarts the
daemon or stops and restarts the broker at random moments (seeded, printed), then prints
readings published, stored, redeliveries ignored, rows lost (must be 0), publish→commit
lag (p99 and max) and the daemon's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from ingest.decode.topics import TopicScheme
from meterflow.publisher import Publisher
from meterflow.simulate import paced
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess


def publish(port: int, rate: float, seconds: float, published: list[int]) -> None:
    """Paced publishing that rides out broker restarts (paho reconnects and resends)."""
    scheme = TopicScheme("soak")
    with Publisher("127.0.0.1", port, client_id="soak-publisher") as publisher:
        for seq in paced(rate, seconds):
            device = f"meter-{seq % 500:03d}"
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            body = {"ts": at, "energy_kwh": 0.01, "power_kw": 0.6, "seq": seq}
            publisher.publish(scheme.telemetry("smart_meter", device), json.dumps(body).encode())
            published[0] += 1
        publisher.wait_acknowledged(timeout=300)


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM energy_data").fetchone()[0])
    except sqlite3.Error:
        return 0


def lags(db: Path) -> list[float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT (julianday(created_at) - julianday(recorded_at)) * 86400 FROM energy_data"
        ).fetchall()
    return sorted(lag for (lag,) in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} readings/s, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="meterflow-soak-") as scratch:
        root = Path(scratch)
        db = root / "meterflow.db"
        with Mosquitto(root / "mosquitto") as broker:
            daemon = DaemonProcess(broker.url, db, "soak", root / "daemon.log")
            published = [0]
            kills = restarts = 0
            peak = 0.0
            redeliveries = 0
            with daemon:
                publisher = threading.Thread(
                    target=publish, args=(broker.port, args.rate, args.seconds, published)
                )
                publisher.start()
                next_event = time.monotonic() + rng.uniform(5, 20)
                while publisher.is_alive():
                    time.sleep(0.1)
                    peak = max(peak, psutil.Process(daemon.pid).memory_info().rss / 2**20)
                    if time.monotonic() < next_event:
                        continue
                    if rng.random() < 0.6:
                        redeliveries += last_duplicates(daemon)
                        daemon.kill()
                        daemon.start()
                        kills += 1
                    else:
                        broker.stop(signal.SIGTERM)
                        time.sleep(rng.uniform(0.5, 3))
                        broker.start()
                        restarts += 1
                    next_event = time.monotonic() + rng.uniform(5, 20)
                deadline = time.monotonic() + 120
                while stored(db) < published[0] and time.monotonic() < deadline:
                    time.sleep(0.2)
                daemon.signal(signal.SIGTERM)
                daemon.wait()
                redeliveries += last_duplicates(daemon)
            rows, lag = stored(db), lags(db)
    print(f"daemon SIGKILLed {kills} times, broker restarted {restarts} times")
    print(f"published {published[0]:,}  stored {rows:,}  redeliveries ignored {redeliveries:,}"
          f"  lost {published[0] - rows}")  # fmt: skip
    print(
        f"publish->commit lag: p50 {lag[len(lag) // 2]:.3f} s  p99 "
        f"{lag[int(len(lag) * 0.99)]:.3f} s  max {lag[-1]:.3f} s   peak RSS {peak:.1f} MiB"
    )


def last_duplicates(daemon: DaemonProcess) -> int:
    """Duplicates the current daemon process counted, from its latest summary line."""
    lines = [line for line in daemon.log().splitlines() if '"duplicates"' in line]
    return int(json.loads(lines[-1])["duplicates"]) if lines else 0


if __name__ == "__main__":
    main()
