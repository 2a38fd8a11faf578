"""End-to-end ingest benchmark: meterflow against a bare aiomqtt client and a naive baseline.

    python -m bench.ingest [--readings 200000] [--devices 1000]

Each contender gets a fresh Mosquitto (config/mosquitto.conf) and consumes the same QoS 1
workload; the clock runs from the publisher's first publish to the last message counted
(a), committed by meterflow (b, acknowledged after commit) or committed by the naive
consumer (c). The publisher waits for every PUBACK, so the count is exact.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.mosquitto import Mosquitto

PREFIX = "bench"
TOPIC = f"{PREFIX}/+/+/telemetry"


@dataclass
class Result:
    name: str
    seconds: float
    stored: int
    peak_rss_mb: float

    def rate(self, readings: int) -> float:
        return readings / self.seconds


class PeakRss:
    """Samples a process's resident memory every 50 ms."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def wait_for_line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"{process.args!r} ended without printing {prefix!r}")


def publish(port: int, readings: int, devices: int) -> float:
    """Run the publisher; return the time of its first publish."""
    output = subprocess.run(  # noqa: PLW1510 - checked below
        [
            sys.executable,
            "-m",
            "bench.publish",
            "--port",
            str(port),
            "--prefix",
            PREFIX,
            "--readings",
            str(readings),
            "--devices",
            str(devices),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if output.returncode != 0:
        raise RuntimeError(f"publisher failed:\n{output.stderr}")
    words = output.stdout.split()
    started, finished = float(words[1]), float(words[3])
    print(f"    publisher alone: {readings / (finished - started):,.0f} readings/s", flush=True)
    return started


def reference(kind: str, port: int, readings: int, devices: int, db: Path) -> Result:
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.consumers",
            kind,
            "--port",
            str(port),
            "--topic",
            TOPIC,
            "--expect",
            str(readings),
            "--db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_line(consumer, "ready")
    rss = PeakRss(consumer.pid)
    started = publish(port, readings, devices)
    done = float(wait_for_line(consumer, "done").split()[1])
    consumer.wait(timeout=60)
    stored = readings
    if db.exists():
        with closing(sqlite3.connect(db)) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    return Result(kind, done - started, stored, rss.stop())


def meterflow(port: int, readings: int, devices: int, db: Path, log: Path) -> Result:
    command = [
        str(Path(sys.executable).with_name("meterflow")),
        "run",
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--db",
        f"sqlite:///{db}",
    ]
    env = {
        "METERFLOW_MQTT__TOPIC_PREFIX": PREFIX,
        "METERFLOW_MQTT__CLIENT_ID": "bench-meterflow",
        "METERFLOW_LOG__FORMAT": "json",
        "PATH": str(Path(sys.executable).parent),
    }
    with log.open("w") as log_file:
        daemon = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file)
    wait_until(lambda: '"subscribed"' in log.read_text(), 30)
    rss = PeakRss(daemon.pid)
    count: Callable[[], int] = lambda: count_rows(db)  # noqa: E731
    started = publish(port, readings, devices)
    wait_until(lambda: count() >= readings, 900, poll=0.01)
    done = time.time()
    peak = rss.stop()
    daemon.terminate()
    daemon.wait(timeout=60)
    return Result("meterflow", done - started, count(), peak)


def count_rows(db: Path) -> int:
    try:
        with closing(sqlite3.connect(db)) as conn:
            return int(conn.execute("SELECT count(*) FROM energy_data").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        time.sleep(poll)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--skip-naive", action="store_true", help="leave out (c), the slowest")
    args = parser.parse_args()
    n = args.readings
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-") as scratch:
        root = Path(scratch)
        contenders: list[tuple[str, Callable[[int, Path], Result]]] = [
            ("a", lambda port, d: reference("aiomqtt-count", port, n, args.devices, d / "none.db")),
            (
                "b",
                lambda port, d: meterflow(
                    port, n, args.devices, d / "meterflow.db", d / "daemon.log"
                ),
            ),
        ]
        if not args.skip_naive:
            contenders.append(
                (
                    "c",
                    lambda port, d: reference("naive-paho", port, n, args.devices, d / "naive.db"),
                )
            )
        for key, run in contenders:
            directory = root / key
            directory.mkdir()
            with Mosquitto(directory) as broker:
                results[key] = run(broker.port, directory)
            r = results[key]
            print(
                f"({key}) {r.name:14} {r.rate(n):9,.0f} readings/s  {r.seconds:7.2f} s  "
                f"stored {r.stored:,}  peak RSS {r.peak_rss_mb:6.1f} MiB",
                flush=True,
            )
    a, b = results["a"], results["b"]
    print(f"\nworkload: {n:,} readings from {args.devices:,} devices, QoS 1")
    print(f"b/a (meterflow vs bare aiomqtt ceiling): {b.rate(n) / a.rate(n):.2f}   target >= 0.70")
    if "c" in results:
        c = results["c"]
        print(
            f"b/c (meterflow vs naive paho+INSERT):   {b.rate(n) / c.rate(n):.2f}   target >= 2.50"
        )
    print(f"meterflow rows lost: {n - b.stored}   peak RSS: {b.peak_rss_mb:.1f} MiB")


if __name__ == "__main__":
    main()
