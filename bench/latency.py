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
    share = args.rate / args.publishers
    total = int(share * args.seconds) * args.publishers
    metrics_port = free_port()
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-latency-") as scratch:
        directory = Path(scratch)
        with Mosquitto(directory / "mosquitto") as broker:
            log = directory / "daemon.log"
            env = {"METERFLOW_MQTT__TOPIC_PREFIX": PREFIX, "METERFLOW_LOG__FORMAT": "json",
                   "METERFLOW_LOG__SUMMARY_INTERVAL_S": str(SUMMARY_INTERVAL_S),
                   "METERFLOW_MQTT__CLIENT_ID": "bench-latency", "PATH": str(BIN)}  # fmt: skip
            if args.max_delay_ms is not None:
                env["METERFLOW_BATCH__MAX_DELAY_MS"] = str(args.max_delay_ms)
            with log.open("w") as out:
                daemon = subprocess.Popen(
                    [str(BIN / "meterflow"), "run", "--broker", broker.url,
                     "--db", f"sqlite:///{directory / 'meterflow.db'}",
                     "--metrics-port", str(metrics_port)],
                    env=env, stdout=out, stderr=out,
                )  # fmt: skip
            try:
                wait_until(lambda: '"subscribed"' in log.read_text(), 60)
                publishers = [
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
                            str(args.seconds),
                            "--offset",
                            str(DEVICES * n),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for n in range(args.publishers)
                ]
                started = time.monotonic()
                reports = [p.communicate(timeout=args.seconds + 300)[0] for p in publishers]
                sent_in = max(float(report.split()[-1]) for report in reports)
                wait_until(lambda: stored_by_summary(log)[1] >= total, 300, poll=0.1)
                buckets = lag_buckets(metrics_port)
            finally:
                daemon.terminate()
                daemon.wait(timeout=60)
    count = buckets[-1][1]
    delay = "config's" if args.max_delay_ms is None else f"{args.max_delay_ms} ms"
    print(f"batch.max_delay_ms: {delay}")
    print(f"offered {args.rate:,.0f} readings/s from {args.publishers} publishers for "
          f"{args.seconds:g} s; sent {total:,} in {sent_in:.1f} s "
          f"({total / sent_in:,.0f}/s achieved), all stored "
          f"{time.monotonic() - started:.1f} s after the start")  # fmt: skip
    for bound, within in buckets:
        if bound <= 1:
            print(f"  publish -> commit <= {1000 * bound:4.0f} ms: {within / count:7.2%}")
    p99_ok = next(within for bound, within in buckets if bound == 0.25) / count >= 0.99
    print(f"p99 <= 250 ms: {'yes' if p99_ok else 'no'}")


if __name__ == "__main__":
    main()
