"""The mistakes a newcomer makes in the first hour end in a line or two naming the problem
and the fix: no traceback, nothing left behind. A database out of reach is waited for."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterflow.publisher import Publisher
from tests.databases import PostgresDatabase, count_readings
from tests.helpers import payload, recent, wait_until
from tests.mosquitto import Mosquitto, free_port
from tests.process import METERFLOW, DaemonProcess
from tests.scrape import readyz
from tests.test_delivery_guarantees import numbered


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`meterflow run ARGS` against a broker nobody listens on: it must stop by itself."""
    return subprocess.run(
        [METERFLOW, "run", "--broker", "mqtt://127.0.0.1:9", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a command that had to refuse; nothing else but log lines."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("Error: ")
    return errors[0]


def test_a_toml_syntax_error_names_the_file_and_the_place(tmp_path: Path) -> None:
    (tmp_path / "meterflow.toml").write_text("[storage\nurl = 'sqlite:///x.db'\n")
    line = refused(run("--config", "meterflow.toml", cwd=tmp_path))
    assert "meterflow.toml is not valid TOML" in line
    assert "line 1, column 9" in line


def test_a_path_given_as_database_url_is_refused_with_the_url_it_meant(tmp_path: Path) -> None:
    line = refused(run("--db", "data/x.db", cwd=tmp_path))
    assert "a SQLite file is given as sqlite:///data/x.db" in line
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_with_two_slashes_creates_nothing_anywhere(tmp_path: Path) -> None:
    """sqlite://data/x.db reads "data" as a host; it once left x.db and its lock file in
    the working directory."""
    line = refused(run("--db", "sqlite://data/x.db", cwd=tmp_path))
    assert "takes three slashes: sqlite:///data/x.db" in line
    assert list(tmp_path.iterdir()) == []


def test_a_database_where_no_directory_can_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a directory")
    line = refused(run("--db", "sqlite:///data/x.db", cwd=tmp_path))
    assert "cannot create the database data/x.db" in line
    assert "a place this user can write to" in line


@pytest.mark.mqtt
def test_a_second_daemon_on_the_same_sqlite_file_is_refused_naming_the_first(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    database = tmp_path / "data" / "meterflow.db"
    with DaemonProcess(broker.url, database, prefix, tmp_path / "first.log") as first:
        line = refused(run("--db", f"sqlite:///{database}", cwd=tmp_path))
        assert f"in use by another meterflow process (a daemon, pid {first.pid})" in line


@pytest.mark.postgres
def test_a_missing_postgres_database_says_how_to_create_it(
    postgres: PostgresDatabase, tmp_path: Path
) -> None:
    url = postgres.url.rsplit("/", 1)[0] + "/no_such_meterflow_db"
    line = refused(run("--db", url, cwd=tmp_path))
    assert 'database "no_such_meterflow_db" does not exist' in line
    assert "createdb -h 127.0.0.1 no_such_meterflow_db" in line


class _Forward(socketserver.BaseRequestHandler):
    target: tuple[str, int]
    sockets: list[socket.socket]

    def handle(self) -> None:
        with socket.create_connection(self.target) as upstream:
            self.sockets.extend((self.request, upstream))
            pumps = [
                threading.Thread(target=_pump, args=(self.request, upstream), daemon=True),
                threading.Thread(target=_pump, args=(upstream, self.request), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingTCPServer):
    # The same port again at once, as a restarted server would take it.
    allow_reuse_address = True
    daemon_threads = True


@contextlib.contextmanager
def postgres_on(port: int) -> Iterator[None]:
    """PostgreSQL (127.0.0.1:5432) reachable on `port` for the block only: before, nothing
    listens there (a server down or starting); after, every connection is cut (a server
    gone, or the network)."""
    sockets: list[socket.socket] = []
    handler = type("Forward", (_Forward,), {"target": ("127.0.0.1", 5432), "sockets": sockets})
    server = _Server(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.mark.mqtt
@pytest.mark.postgres
async def test_postgres_down_at_start_is_waited_for_unready_then_used(
    broker: Mosquitto, postgres: PostgresDatabase, prefix: str, tmp_path: Path
) -> None:
    """The daemon starts while nothing listens where its database should be: it says so,
    retries with backoff, /readyz answers 503; once the server is there it subscribes and
    stores."""
    port, metrics = free_port(), free_port()
    url = f"postgresql://127.0.0.1:{port}/{postgres.name}"
    daemon = DaemonProcess(
        broker.url, url, prefix, tmp_path / "daemon.log", METERFLOW_METRICS__PORT=str(metrics)
    )
    with daemon.started_in_background():
        await asyncio.to_thread(daemon.wait_for_log, "database unavailable, retrying")
        assert "connection refused" in daemon.log()
        await wait_until(lambda: "http endpoints listening" in daemon.log(), what="endpoints")
        status, _ = await readyz(metrics)
        assert status == 503
        with postgres_on(port):
            await asyncio.to_thread(daemon.wait_for_log, '"subscribed"', 1, 30)
            assert "database reachable again" in daemon.log()
            with Publisher("127.0.0.1", broker.port) as publisher:
                publisher.publish(f"{prefix}/smart_meter/m-1/telemetry", payload("m-1", recent()))
                await asyncio.to_thread(publisher.wait_acknowledged)
            await wait_until(lambda: count_readings(postgres) == 1, what="the reading stored")
            status, _ = await readyz(metrics)
            assert status == 200
            daemon.signal(signal.SIGTERM)
            assert await asyncio.to_thread(daemon.wait) == 0
    assert "Traceback" not in daemon.log()


@pytest.mark.mqtt
def test_status_finds_the_daemon_on_the_same_database_whatever_port_it_took(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """The daemon's endpoint on a port the OS picked (metrics.port = 0): `status` with the
    same database finds it without --url; once the daemon is gone it says there is none."""
    database = tmp_path / "data" / "meterflow.db"
    daemon = DaemonProcess(
        broker.url, database, prefix, tmp_path / "daemon.log", METERFLOW_METRICS__PORT="0"
    )
    ask = [METERFLOW, "status", "--db", f"sqlite:///{database}"]
    with daemon:
        found = subprocess.run(ask, capture_output=True, text=True, timeout=30, check=False)
        assert found.returncode == 0, found.stdout + found.stderr
        assert "daemon: ready" in found.stdout
    gone = subprocess.run(ask, capture_output=True, text=True, timeout=30, check=False)
    assert "daemon: no endpoint" in gone.stdout


@pytest.mark.mqtt
@pytest.mark.postgres
async def test_postgres_lost_mid_stream_is_waited_for_and_nothing_is_lost(
    broker: Mosquitto, postgres: PostgresDatabase, prefix: str, tmp_path: Path
) -> None:
    """The connection to PostgreSQL is cut while readings flow: the daemon retries with
    backoff, turns unready, and once the server is back stores every reading once."""
    port, metrics = free_port(), free_port()
    url = f"postgresql://127.0.0.1:{port}/{postgres.name}"
    daemon = DaemonProcess(
        broker.url, url, prefix, tmp_path / "daemon.log",
        METERFLOW_METRICS__PORT=str(metrics), METERFLOW_STORAGE__UNREADY_AFTER_S="0.5",
        METERFLOW_STORAGE__RETRY_MAX_S="1",
    )  # fmt: skip
    messages = numbered(prefix, 400)
    with Publisher("127.0.0.1", broker.port) as publisher, daemon.started_in_background():
        with postgres_on(port):
            await asyncio.to_thread(daemon.wait_for_log, '"subscribed"')
            for topic, body in messages[:200]:
                publisher.publish(topic, body)
            await wait_until(lambda: count_readings(postgres) == 200, what="200 readings")
        for topic, body in messages[200:]:
            publisher.publish(topic, body)
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: "retrying" in daemon.log(), what="a retry")
        await asyncio.sleep(1.0)
        status, _ = await readyz(metrics)
        assert status == 503
        with postgres_on(port):
            await wait_until(lambda: count_readings(postgres) == 400, within=30, what="all 400")
            daemon.signal(signal.SIGTERM)
            assert await asyncio.to_thread(daemon.wait) == 0
    seqs = postgres.query("SELECT (metadata->>'seq')::int FROM energy_data ORDER BY 1")
    assert [seq for (seq,) in seqs] == list(range(400))
    assert "Traceback" not in daemon.log()
