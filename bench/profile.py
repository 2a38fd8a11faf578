"""Where the daemon's CPU goes, per stage, while it drains a backlog.

    python -m bench.profile [--readings 100000] [--backend sqlite|postgres]

Runs `meterflow run` under py-spy (sampling both the event loop thread and aiosqlite's
SQLite thread), drains a backlog from a fresh Mosquitto into a new SQLite file or
PostgreSQL database, and prints each stage's CPU in microseconds per reading. Start-up
(imports) is left out, and so is the PostgreSQL server's own work.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import psutil

from bench.ingest import (
    BIN,
    PREFIX,
    SUMMARY_INTERVAL_S,
    prime_session,
    publish_backlog,
    stored_by_summary,
    wait_until,
)
from tests.databases import fresh_postgres
from tests.mosquitto import Mosquitto

RATE_HZ = 250
# Stage name, and the frames that put a sample in it (first match wins).
STAGES = [
    ("start-up (imports)", ["_find_and_load"]),
    ("SQLite checkpoints (own thread)", ["Checkpointer._checkpoint"]),
    ("SQLite statements (aiosqlite thread)", ["_connection_worker_thread"]),
    ("decode + validate", ["Router.decode"]),
    ("row build (SQLite rows, tuples for COPY)", ["batch_rows", "reading_rows"]),
    ("counters, sightings, registry (Python)", ["_with_counters", "sightings", "upsert_devices",
                                                "registered_owners"]),
    ("PostgreSQL statements (asyncpg, COPY)", ["PostgresBackend."]),
    ("MQTT receive + parse", ["data_received", "_read_ready"]),
    ("ack (PUBACK writes)", ["SubscriberProtocol.ack", "Connection.ack"]),
    ("batching", ["Batcher."]),
    ("stats", ["Stats."]),
]  # fmt: skip


def record(readings: int, scratch: Path, database: str) -> Path:
    profile = scratch / "profile.txt"
    with Mosquitto(scratch / "mosquitto") as broker:
        prime_session(broker.port, "bench-meterflow")
        publish_backlog(broker.port, readings, 1000)
        log = scratch / "daemon.log"
        env = {"METERFLOW_MQTT__TOPIC_PREFIX": PREFIX,
               "METERFLOW_MQTT__CLIENT_ID": "bench-meterflow", "METERFLOW_LOG__FORMAT": "json",
               "METERFLOW_LOG__SUMMARY_INTERVAL_S": str(SUMMARY_INTERVAL_S),
               "PATH": str(BIN)}  # fmt: skip
        with log.open("w") as out:
            spy = subprocess.Popen(
                [str(BIN / "py-spy"), "record", "--rate", str(RATE_HZ), "--format", "raw",
                 "--threads", "-o", str(profile), "--", str(BIN / "meterflow"), "run",
                 "--broker", broker.url, "--db", database],
                env=env, stdout=out, stderr=out,
            )  # fmt: skip
            wait_until(lambda: stored_by_summary(log)[1] >= readings, 600, poll=0.1)
            for daemon in psutil.Process(spy.pid).children():
                daemon.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    return profile


IDLE = "idle"


def stages(profile: Path) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack.rpartition(";")[2].startswith("_worker "):
            # An executor thread waiting for work: py-spy does not see that wait as idle.
            samples[IDLE] += int(count)
            continue
        name = next(
            (name for name, keys in STAGES if any(key in stack for key in keys)),
            "event loop, other",
        )
        samples[name] += int(count)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mf-profile-")))
        if args.backend == "postgres":
            database = stack.enter_context(fresh_postgres()).url
        else:
            database = f"sqlite:///{scratch / 'meterflow.db'}"
        samples = stages(record(args.readings, scratch, database))
    samples.pop("start-up (imports)", None)
    samples.pop(IDLE, None)
    per_reading = 1e6 / RATE_HZ / args.readings
    total = sum(samples.values()) * per_reading
    print(f"{'stage':42} {'us/reading':>10} {'share':>6}")
    for name, count in samples.most_common():
        print(f"{name:42} {count * per_reading:10.1f} {count * per_reading / total:6.0%}")
    print(f"{'total (both threads)':42} {total:10.1f}")


if __name__ == "__main__":
    main()
