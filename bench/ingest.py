"""Ingest benchmark: meterflow against a bare aiomqtt client and a naive baseline.

    python -m bench.ingest [--readings 200000] [--devices 1000] [--only b,be]

Each contender gets a fresh Mosquitto started from config/mosquitto.conf and a persistent
session holding the same backlog of QoS 1 readings (published beforehand by a publisher
that waits for every PUBACK, so the count is exact). The clock runs from the moment the
consumer is connected until (w) Mosquitto's C client `mosquitto_sub` has received the last
message (the broker's wire ceiling here; its clock starts at launch, connect included),
(a) the bare aiomqtt client has counted the last message,
(b) meterflow has committed the last row (acknowledging each message after its commit),
receiving through its own subscriber, (b2) the same through the aiomqtt receive path,
(bn) (b) with SQLite's synchronous = NORMAL instead of the default FULL (no fsync per batch),
(bp) (b) with a time-of-use tariff and grid carbon configured: every batch priced,
(be) (b) with encryption at rest (storage.encryption_key: SQLCipher pages),
(c) the naive consumer has committed the last row. A backlog measures each consumer's own
ceiling; a live publisher here tops out near 10,000 messages/s and would measure itself.
Then (l) meterflow's publish-to-commit latency at a steady rate (bench.latency), by
default half of the 40,000 readings/s target.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from storage import cipher
from storage.cipher import ENVIRONMENT_KEY
from tests.mosquitto import Mosquitto

PREFIX = "bench"
# Issue 8's target for (b); p99 latency is measured at half of it.
TARGET_RATE = 40_000
TOPIC = f"{PREFIX}/+/+/telemetry"
BIN = Path(sys.executable).parent


@dataclass
class Result:
    name: str
    seconds: float
    stored: int
    peak_rss_mb: float
    cpu_seconds: float
    broker_cpu_seconds: float = 0.0

    def rate(self, readings: int) -> float:
        return readings / self.seconds


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Sampler:
    """Samples a process's resident memory every 50 ms, and its CPU time at the end.

    `exclude_start_up()` marks the moment the process starts its real work: its CPU before
    that (imports, schema checks) is left out of `stop()`'s figure.
    """

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self.cpu = 0.0
        self._start_up = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
                times = self._process.cpu_times()
                self.cpu = times.user + times.system
            except psutil.NoSuchProcess:
                return

    def exclude_start_up(self) -> None:
        self._start_up = cpu_seconds(self._process.pid)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20, self.cpu - self._start_up


def run_checked(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr}")
    return done.stdout


def prime_session(port: int, client_id: str, topic: str = TOPIC) -> None:
    """Create the consumer's persistent session and subscription, so the backlog queues."""
    run_checked([sys.executable, "-m", "bench.consumers", "aiomqtt-count", "--port", str(port),
                 "--client-id", client_id, "--topic", topic, "--expect", "0"])  # fmt: skip


def publish_backlog(port: int, readings: int, devices: int) -> float:
    words = run_checked([sys.executable, "-m", "bench.publish", "--port", str(port),
                         "--prefix", PREFIX, "--readings", str(readings),
                         "--devices", str(devices)]).split()  # fmt: skip
    return readings / (float(words[3]) - float(words[1]))


def line_starting(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"{process.args!r} ended without printing {prefix!r}")


def reference(kind: str, port: int, readings: int, db: Path) -> Result:
    consumer = subprocess.Popen(
        [sys.executable, "-m", "bench.consumers", kind, "--port", str(port), "--client-id",
         f"bench-{kind}", "--topic", TOPIC, "--expect", str(readings), "--db", str(db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    sampler = Sampler(consumer.pid)
    ready = float(line_starting(consumer, "ready").split()[1])
    sampler.exclude_start_up()
    done = float(line_starting(consumer, "done").split()[1])
    consumer.wait(timeout=60)
    peak, cpu = sampler.stop()
    stored = readings
    if db.exists():
        with closing(sqlite3.connect(db)) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    return Result(kind, done - ready, stored, peak, cpu)


def wire(port: int, readings: int) -> Result:
    """The broker's own ceiling: Mosquitto's C client draining the backlog, printing nothing."""
    command = ["mosquitto_sub", "-p", str(port), "-i", "bench-wire", "-c", "-q", "1",
               "-t", TOPIC, "-C", str(readings), "-F", ""]  # fmt: skip
    started = time.time()
    consumer = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    sampler = Sampler(consumer.pid)
    consumer.wait(timeout=600)
    seconds = time.time() - started
    peak, cpu = sampler.stop()
    return Result("mosquitto_sub", seconds, readings, peak, cpu)


def meterflow(
    port: int,
    readings: int,
    db: Path,
    log: Path,
    *,
    client: str = "meterflow",
    synchronous: str = "FULL",
    priced: bool = False,
    key: str | None = None,
) -> Result:
    command = [str(BIN / "meterflow"), "run", "--broker", f"mqtt://127.0.0.1:{port}",
               "--db", f"sqlite:///{db}"]  # fmt: skip
    if priced:
        config = db.with_name("priced.toml")
        config.write_text(PRICED_CONFIG)
        command += ["--config", str(config)]
    env = {"METERFLOW_MQTT__TOPIC_PREFIX": PREFIX, "METERFLOW_MQTT__CLIENT_ID": "bench-meterflow",
           "METERFLOW_LOG__FORMAT": "json", "PATH": str(BIN), "METERFLOW_MQTT__CLIENT": client,
           "METERFLOW_LOG__SUMMARY_INTERVAL_S": str(SUMMARY_INTERVAL_S),
           "METERFLOW_STORAGE__SQLITE_SYNCHRONOUS": synchronous}  # fmt: skip
    if key is not None:
        env[ENVIRONMENT_KEY] = key
    with log.open("w") as log_file:
        daemon = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file)
    sampler = Sampler(daemon.pid)
    wait_until(lambda: '"subscribed"' in log.read_text(), 120, poll=0.005)
    sampler.exclude_start_up()
    # The daemon's own summaries say when it is done: counting rows every few milliseconds
    # would take CPU from the daemon being measured.
    wait_until(lambda: stored_by_summary(log)[1] >= readings, 900, poll=SUMMARY_INTERVAL_S)
    done = stored_by_summary(log)[0]
    peak, cpu = sampler.stop()
    daemon.terminate()
    daemon.wait(timeout=60)
    subscribed = next(
        json.loads(line) for line in log.read_text().splitlines() if '"subscribed"' in line
    )
    ready = datetime.fromisoformat(subscribed["timestamp"]).timestamp()
    name = "meterflow" if client == "meterflow" else f"meterflow/{client}"
    if synchronous != "FULL":
        name = f"{name} {synchronous}"
    if priced:
        name = f"{name} priced"
    if key is not None:
        name = f"{name} encrypted"
    return Result(name, done - ready, count_rows(db, key), peak, cpu)


# A tariff of the kind most users have: peak and off-peak prices by local weekday and time,
# and one grid zone's carbon.
PRICED_CONFIG = """
[[tariffs]]
name = "time-of-use"
time_zone = "Europe/Berlin"
valid_from = 2020-01-01
import_price = 0.30
export_price = 0.08

[[tariffs.periods]]
name = "peak"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "07:00"
end = "21:00"
import_price = 0.40

[carbon]
zone = "DE"
intensity_g_per_kwh = { DE = 380.0 }
"""


SUMMARY_INTERVAL_S = 0.1


def stored_by_summary(log: Path) -> tuple[float, int]:
    """(time, readings stored) of the first summary line showing the daemon's total so far."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if '"summary"' in line]
    if not lines:
        return 0.0, 0
    total = lines[-1]["stored"]
    first = next(line for line in lines if line["stored"] == total)
    return datetime.fromisoformat(first["timestamp"]).timestamp(), int(total)


def count_rows(db: Path, key: str | None = None) -> int:
    try:
        with closing(cipher.connect(db, key)) as conn:
            return int(conn.execute("SELECT count(*) FROM energy_data").fetchone()[0])
    except cipher.Error:
        return 0


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        time.sleep(poll)


def print_cpu_ceiling(b: Result, w: Result, n: int) -> None:
    """What this machine's cores allow meterflow, from its own run's CPU per reading.

    The daemon and the broker share the cores; at the CPU both spent per reading in (b),
    no schedule moves more than `cores / CPU per reading` readings a second.
    """
    cores = psutil.cpu_count() or 1
    per_reading = (b.cpu_seconds + b.broker_cpu_seconds) / n
    busy = (b.cpu_seconds + b.broker_cpu_seconds) / b.seconds
    ceiling = cores / per_reading
    print(
        f"b    daemon + broker kept {busy:.2f} of {cores} cores busy: at "
        f"{1e6 * per_reading:.1f} us of CPU per reading the cores allow at most "
        f"{ceiling:,.0f} readings/s = {ceiling / w.rate(n):.2f} x the wire ceiling"
    )


def print_ratios(results: dict[str, Result], n: int) -> None:
    """The ratios between the contenders that ran, against their targets where there are."""

    def ratio(top: str, bottom: str, label: str, target: str = "", *, cpu: bool = False) -> None:
        if top in results and bottom in results:
            t, u = results[top], results[bottom]
            said = f"{top}/{bottom} {label}".ljust(38)
            extra = f", CPU {t.cpu_seconds / u.cpu_seconds:.2f}" if cpu else ""
            print(f"{said}{t.rate(n) / u.rate(n):5.2f} readings/s{extra}{target}")

    ratio("b", "a", "meterflow / bare aiomqtt:", "   target >= 0.70")
    ratio("b", "w", "meterflow / wire ceiling:", "   target >= 0.70")
    ratio("b", "c", "meterflow / naive paho+INSERT:", "   target >= 2.50")
    ratio("b2", "a", "meterflow on aiomqtt / bare aiomqtt:")
    ratio("b", "b2", "own subscriber / aiomqtt path:")
    ratio("b", "bn", "synchronous FULL / NORMAL:", cpu=True)
    ratio("bp", "b", "priced / unpriced:", cpu=True)
    ratio("be", "b", "encrypted / plain:", cpu=True)
    for key in ("b", "b2", "bn", "bp", "be"):
        if key in results:
            r = results[key]
            print(f"{r.name} rows lost: {n - r.stored}   peak RSS {r.peak_rss_mb:.1f} MiB")
    if "b" in results and "w" in results:
        print_cpu_ceiling(results["b"], results["w"], n)
    if "b" in results:
        fast_enough = "yes" if results["b"].rate(n) >= TARGET_RATE else "no"
        print(f"b    meterflow >= {TARGET_RATE:,.0f} readings/s: {fast_enough}")


# The encrypted contender's passphrase: SQLCipher's key derivation runs once per connection.
BENCH_KEY = "bench passphrase"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--skip-naive", action="store_true", help="leave out (c), the slowest")
    parser.add_argument(
        "--only", help="these contenders alone, by letter (b,be); the ratios between them"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=TARGET_RATE / 2,
        help="then publish-to-commit latency at this steady rate (0: skip); default half "
        "the 40,000/s target",
    )
    args = parser.parse_args()
    n = args.readings
    contenders: list[tuple[str, str, Callable[[int, Path], Result]]] = [
        ("w", "bench-wire", lambda port, _: wire(port, n)),
        ("a", "bench-aiomqtt-count", lambda port, d: reference("aiomqtt-count", port, n, d / "x")),
        ("b", "bench-meterflow",
         lambda port, d: meterflow(port, n, d / "meterflow.db", d / "daemon.log")),
        ("b2", "bench-meterflow",
         lambda port, d: meterflow(port, n, d / "meterflow.db", d / "daemon.log",
                                   client="aiomqtt")),
        ("bn", "bench-meterflow",
         lambda port, d: meterflow(port, n, d / "meterflow.db", d / "daemon.log",
                                   synchronous="NORMAL")),
        ("bp", "bench-meterflow",
         lambda port, d: meterflow(port, n, d / "meterflow.db", d / "daemon.log", priced=True)),
        ("be", "bench-meterflow",
         lambda port, d: meterflow(port, n, d / "meterflow.db", d / "daemon.log",
                                   key=BENCH_KEY)),
    ]  # fmt: skip
    if not args.skip_naive:
        contenders.append(
            ("c", "bench-naive-paho", lambda port, d: reference("naive-paho", port, n, d / "n.db"))
        )
    if args.only:
        chosen = args.only.split(",")
        contenders = [contender for contender in contenders if contender[0] in chosen]
    print(f"workload: {n:,} readings from {args.devices:,} devices, QoS 1, as a backlog")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-") as scratch:
        for key, client_id, run in contenders:
            directory = Path(scratch) / key
            directory.mkdir()
            with Mosquitto(directory) as broker:
                prime_session(broker.port, client_id)
                publish_rate = publish_backlog(broker.port, n, args.devices)
                broker_before = cpu_seconds(broker.pid)
                r = results[key] = run(broker.port, directory)
                r.broker_cpu_seconds = cpu_seconds(broker.pid) - broker_before
            print(
                f"({key:>2}) {r.name:18} {r.rate(n):9,.0f} readings/s  {r.seconds:6.2f} s  "
                f"CPU {1e6 * r.cpu_seconds / n:4.1f} us/reading (broker "
                f"{1e6 * r.broker_cpu_seconds / n:4.1f})  stored {r.stored:,}  "
                f"peak RSS {r.peak_rss_mb:5.1f} MiB   (backlog published at {publish_rate:,.0f}/s)",
                flush=True,
            )
    print_ratios(results, n)
    if args.latency_rate:
        # Imported here: bench.latency builds on this module's helpers.
        from bench.latency import measure  # noqa: PLC0415

        print("(l) meterflow, publish -> commit latency (python -m bench.latency):")
        print("\n".join(f"    {line}" for line in measure(args.latency_rate, 20).report()))


if __name__ == "__main__":
    main()
