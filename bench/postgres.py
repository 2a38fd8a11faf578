"""PostgreSQL against SQLite, and two daemons against one.

    python -m bench.postgres [--readings 200000] [--devices 1000]

Like bench.ingest, each run drains the same backlog of QoS 1 readings from a fresh
Mosquitto, timed from the first daemon's subscription to the last committed row: (1) one
daemon on SQLite, (2) one daemon on PostgreSQL, (3) two daemons on PostgreSQL sharing a
subscription. Prints readings/s, the ratios the issue targets, and the CPU seconds the
broker, the PostgreSQL server and the daemons spent in each run (the machine has two
cores). A daemon's CPU is counted from its subscription on, so start-up (imports, schema
checks: about a second each) is left out.

It also prints the ceiling the machine puts on two daemons: the one-daemon run kept C of
the two cores busy (broker, server and daemon together), so at the same CPU cost per
reading two daemons can go at most 2 / C times as fast, however evenly they share the
work.

The end of a run is read from the daemons' own summaries, logged every 0.1 s, not by
counting rows: a `count(*)` every few milliseconds costs the database server a share of
the two cores the run is measuring.
"""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import psycopg

from bench.ingest import BIN, PREFIX, TOPIC, prime_session, publish_backlog, wait_until
from tests.databases import POSTGRES_ADMIN_URL
from tests.mosquitto import Mosquitto

SUMMARY_INTERVAL_S = 0.1


@dataclass
class Run:
    name: str
    seconds: float
    stored: int
    broker_cpu: float
    postgres_cpu: float
    daemon_cpu: float


def summaries(log: Path) -> list[tuple[float, int]]:
    """(time, readings stored so far) of each summary line a daemon logged."""
    found = []
    for line in log.read_text().splitlines():
        if '"summary"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        moment = datetime.fromisoformat(record["timestamp"]).timestamp()
        found.append((moment, int(record["stored"])))
    return found


def subscribed(log: Path) -> bool:
    return '"subscribed"' in log.read_text()


def finished_at(logs: list[Path], readings: int) -> float | None:
    """When the daemons together had stored `readings`: each one's first summary at its total."""
    per_daemon = [summaries(log) for log in logs]
    if sum(lines[-1][1] for lines in per_daemon if lines) < readings:
        return None
    return max(
        next(moment for moment, stored in lines if stored == lines[-1][1])
        for lines in per_daemon
        if lines
    )


def postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def run_daemons(
    broker: Mosquitto, url: str, count: Callable[[], int], *, readings: int, daemons: int,
    devices: int, scratch: Path,
) -> tuple[float, int, float, float, float]:  # fmt: skip
    shared = daemons > 1
    client_ids = [f"bench-meterflow-{n}" for n in range(1, daemons + 1)]
    topic = f"$share/bench/{TOPIC}" if shared else TOPIC
    for client_id in client_ids:
        prime_session(broker.port, client_id, topic)
    publish_backlog(broker.port, readings, devices)
    broker_process = psutil.Process(broker.pid)
    broker_before = sum(broker_process.cpu_times()[:2])
    postgres_before = postgres_cpu()
    processes, logs, started_cpu = [], [], []
    for client_id in client_ids:
        env = {"METERFLOW_MQTT__TOPIC_PREFIX": PREFIX, "METERFLOW_MQTT__CLIENT_ID": client_id,
               "METERFLOW_LOG__FORMAT": "json", "PATH": str(BIN),
               "METERFLOW_LOG__SUMMARY_INTERVAL_S": str(SUMMARY_INTERVAL_S)}  # fmt: skip
        if shared:
            env["METERFLOW_MQTT__SHARED_GROUP"] = "bench"
        log = scratch / f"{client_id}.log"
        logs.append(log)
        with log.open("w") as out:
            processes.append(subprocess.Popen(
                [str(BIN / "meterflow"), "run", "--broker", broker.url, "--db", url],
                env=env, stdout=out, stderr=out,
            ))  # fmt: skip
    for process, log in zip(processes, logs, strict=True):
        wait_until(functools.partial(subscribed, log), 120, poll=0.005)
        started_cpu.append(sum(psutil.Process(process.pid).cpu_times()[:2]))
    wait_until(lambda: finished_at(logs, readings) is not None, 900, poll=SUMMARY_INTERVAL_S)
    done = finished_at(logs, readings)
    assert done is not None
    broker_cpu = sum(broker_process.cpu_times()[:2]) - broker_before
    database_cpu = postgres_cpu() - postgres_before
    daemon_cpu = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in processes) - sum(
        started_cpu
    )
    for process in processes:
        process.terminate()
        process.wait(timeout=60)
    started = min(
        datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        for log in logs
        for line in log.read_text().splitlines()
        if '"subscribed"' in line
    )
    return done - started, count(), broker_cpu, database_cpu, daemon_cpu


def sqlite_count(path: Path) -> Callable[[], int]:
    def count() -> int:
        try:
            with sqlite3.connect(path) as conn:
                return int(conn.execute("SELECT count(*) FROM energy_data").fetchone()[0])
        except sqlite3.Error:
            return 0

    return count


def postgres_count(dsn: str) -> Callable[[], int]:
    def count() -> int:
        try:
            with psycopg.connect(dsn) as conn:
                row = conn.execute(b"SELECT count(*) FROM energy_data").fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error:
            return 0

    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1_000)
    args = parser.parse_args()
    n = args.readings
    print(f"workload: {n:,} readings from {args.devices:,} devices, QoS 1, as a backlog")
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="meterflow-bench-pg-") as scratch_dir:
        scratch = Path(scratch_dir)
        for key, daemons, backend in (("sqlite", 1, "sqlite"), ("pg-1", 1, "postgres"),
                                      ("pg-2", 2, "postgres")):  # fmt: skip
            directory = scratch / key
            directory.mkdir()
            name = f"meterflow_bench_{uuid.uuid4().hex[:8]}"
            admin_dsn = POSTGRES_ADMIN_URL
            dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
            if backend == "postgres":
                with psycopg.connect(admin_dsn, autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{name}"'.encode())
                url, count = (
                    dsn.replace("postgresql://", "postgresql+asyncpg://"),
                    postgres_count(dsn),
                )
            else:
                db = directory / "meterflow.db"
                url, count = f"sqlite:///{db}", sqlite_count(db)
            try:
                with Mosquitto(directory / "mosquitto") as broker:
                    seconds, stored, broker_cpu, database_cpu, daemon_cpu = run_daemons(
                        broker, url, count, readings=n, daemons=daemons,
                        devices=args.devices, scratch=directory,
                    )  # fmt: skip
            finally:
                if backend == "postgres":
                    with psycopg.connect(admin_dsn, autocommit=True) as admin:
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
            run = runs[key] = Run(key, seconds, stored, broker_cpu, database_cpu, daemon_cpu)
            db_cpu = f"{run.postgres_cpu:6.1f} s" if backend == "postgres" else "   -    "
            print(f"{key:7} {daemons} daemon(s)  {n / run.seconds:9,.0f} readings/s  "
                  f"{run.seconds:6.2f} s  stored {run.stored:,}  broker CPU {run.broker_cpu:5.1f} s"
                  f"  PostgreSQL CPU {db_cpu}  daemons CPU {run.daemon_cpu:5.1f} s",
                  flush=True)  # fmt: skip
    rate = {key: n / run.seconds for key, run in runs.items()}
    print(f"PostgreSQL 1 daemon / SQLite:    {rate['pg-1'] / rate['sqlite']:5.2f}   target >= 0.70")
    print(f"PostgreSQL 2 daemons / 1 daemon: {rate['pg-2'] / rate['pg-1']:5.2f}   target >= 1.60")
    one = runs["pg-1"]
    busy = (one.broker_cpu + one.postgres_cpu + one.daemon_cpu) / one.seconds
    print(f"cores busy with one daemon on PostgreSQL: {busy:.2f} of 2, so two daemons can "
          f"reach at most {2 / busy:.2f} x one here")  # fmt: skip
    print(f"rows lost: {sum(n - run.stored for run in runs.values())}")


if __name__ == "__main__":
    main()
