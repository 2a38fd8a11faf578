"""Publish-to-commit latency at a steady rate: is p99 within 250 ms?

    python -m bench.latency [--rate 20000] [--seconds 20] [--publishers 1]

A fresh Mosquitto and a meterflow daemon (SQLite, metrics on a free port). Publisher
processes (bench.pace, lean enough for one to send 20,000/s) send canonical readings at
`rate` in total, each stamped with the moment it is sent. The daemon's lag histogram
(commit time minus the reading's time) is then publish-to-commit latency; the benchmark
reads it from /metrics once every reading is stored and prints the share of readings
within each bound. The issue's target is p99 ≤ 250 ms at half the sustained rate
(bench.ingest gives that rate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.ingest import BIN, SUMMARY_INTERVAL_S, stored_by_summary, wait_until
from bench.pace import DEVICES
from tests.mosquitto import Mosquitto, free_port

PREFIX = "latency"


def lag_buckets(port: int) -> list[tuple[float, float]]:
    """(upper bound in seconds, readings at or below it) from the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sorted(
        (float(sample.labels["le"]), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("lag_seconds_bucket")
    )


@dataclass(frozen=True)
class Latency:
    rate: float
    publishers: int
    seconds: float
    sent: int
    sent_in: float
    stored_after: float
    # (upper bound in seconds, readings committed within it), the daemon's histogram.
    buckets: list[tuple[float, float]]

    def within(self, bound: float) -> float:
        """The share of readings committed within `bound` seconds of being sent."""
        count = self.buckets[-1][1]
        return next(within for upper, within in self.buckets if upper == bound) / count

    def report(self) -> list[str]:
        lines = [
            f"offered {self.rate:,.0f} readings/s from {self.publishers} publishers for "
            f"{self.seconds:g} s; sent {self.sent:,} in {self.sent_in:.1f} s "
            f"({self.sent / self.sent_in:,.0f}/s achieved), all stored "
            f"{self.stored_after:.1f} s after the start"
        ]
        lines.extend(
            f"  publish -> commit <= {1000 * bound:4.0f} ms: {self.within(bound):7.2%}"
            for bound, _ in self.buckets
            if bound <= 1
        )
        lines.append(f"p99 <= 250 ms: {'yes' if self.within(0.25) >= 0.99 else 'no'}")
        return lines


def measure(
    rate: float, seconds: float, publishers: int = 1, max_delay_ms: int | None = None
) -> Latency:
    """Run a fresh broker and daemon, publish at `rate` for `seconds`, read the lag."""
    share = rate / publishers
    total = int(share * seconds) * publishers
    metrics_port = free_port()
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-latency-") as scratch:
        directory = Path(scratch)
        with Mosquitto(directory / "mosquitto") as broker:
            log = directory / "daemon.log"
            env = {"METERFLOW_MQTT__TOPIC_PREFIX": PREFIX, "METERFLOW_LOG__FORMAT": "json",
                   "METERFLOW_LOG__SUMMARY_INTERVAL_S": str(SUMMARY_INTERVAL_S),
                   "METERFLOW_MQTT__CLIENT_ID": "bench-latency", "PATH": str(BIN)}  # fmt: skip
            if max_delay_ms is not None:
                env["METERFLOW_BATCH__MAX_DELAY_MS"] = str(max_delay_ms)
            with log.open("w") as out:
                daemon = subprocess.Popen(
                    [str(BIN / "meterflow"), "run", "--broker", broker.url,
                     "--db", f"sqlite:///{directory / 'meterflow.db'}",
                     "--metrics-port", str(metrics_port)],
                    env=env, stdout=out, stderr=out,
                )  # fmt: skip
            try:
                wait_until(lambda: '"subscribed"' in log.read_text(), 60)
                pacers = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.pace",
                            "--port",
                            str(broker.port),
                            "--prefix",
                            PREFIX,
                            "--rate",
                            str(share),
                            "--seconds",
                            str(seconds),
                            "--offset",
                            str(DEVICES * n),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for n in range(publishers)
                ]
                started = time.monotonic()
                reports = [p.communicate(timeout=seconds + 300)[0] for p in pacers]
                sent_in = max(float(report.split()[-1]) for report in reports)
                wait_until(lambda: stored_by_summary(log)[1] >= total, 300, poll=0.1)
                buckets = lag_buckets(metrics_port)
            finally:
                daemon.terminate()
                daemon.wait(timeout=60)
    return Latency(rate, publishers, seconds, total, sent_in, time.monotonic() - started, buckets)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20_000, help="readings/s in total")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument(
        "--max-delay-ms", type=int, default=None, help="batch.max_delay_ms (default: config's)"
    )
    args = parser.parse_args()
    result = measure(args.rate, args.seconds, args.publishers, args.max_delay_ms)
    delay = "config's" if args.max_delay_ms is None else f"{args.max_delay_ms} ms"
    print(f"batch.max_delay_ms: {delay}")
    print("\n".join(result.report()))


if __name__ == "__main__":
    main()
