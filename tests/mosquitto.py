"""A real Mosquitto for tests, started from the project's own config/mosquitto.conf."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import pytest

PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "mosquitto.conf"
_REPLACED = ("listener", "persistence_location", "log_dest", "pid_file", "user")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_listener(
    process: subprocess.Popen[bytes], port: int, within_s: float, log: Path
) -> None:
    """Wait until a server the test started listens on 127.0.0.1:`port`; RuntimeError with
    its log if it exits first or does not listen within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{said}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"{process.args!r} did not listen on port {port} within {within_s} s")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    candidate = Path("/usr/sbin/mosquitto")
    return str(candidate) if candidate.exists() else None


def require_mosquitto() -> None:
    """Skip the calling test, saying why, where Mosquitto is not installed."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed: run scripts/test, which installs it")


def render_config(directory: Path, port: int, extra: Sequence[str] = ()) -> Path:
    """The project's config with the listener, persistence directory and log moved.

    `extra` lines are appended; an option they set replaces the project's own setting.
    """
    replaced = {*_REPLACED, *(line.split(" ", 1)[0] for line in extra)}
    lines = [
        line
        for line in PROJECT_CONFIG.read_text().splitlines()
        if line.split(" ", 1)[0] not in replaced
    ]
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines += [
        f"listener {port} 127.0.0.1",
        f"persistence_location {data}/",
        f"log_dest file {directory / 'mosquitto.log'}",
        # Started as root, Mosquitto would switch to the `mosquitto` user and then fail,
        # silently but for its log, to write the persistence file in our directory.
        f"user {getpass.getuser()}",
        *extra,
    ]
    path = directory / "mosquitto.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


class Mosquitto:
    """One broker process on its own port and persistence directory; restartable."""

    def __init__(
        self, directory: Path, port: int | None = None, extra_config: Sequence[str] = ()
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (scripts/test installs it)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.config = render_config(directory, self.port, extra_config)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_listener(self._process, self.port, 10, self.directory / "mosquitto.log")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the broker; SIGTERM lets it save its persistence file first."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signum)
            process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(signal.SIGKILL)
