"""A NATS server of the test's own with JetStream and an MQTT listener (MQTT 3.1.1 only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Self

import pytest

from tests.mosquitto import free_port, wait_for_listener


def require_nats() -> str:
    """The nats-server binary; skip the calling test, saying why, where there is none."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if found is None:
        pytest.skip("nats-server is not installed: scripts/setup installs Debian's nats-server")
    return found


class NatsServer:
    def __init__(self, directory: Path) -> None:
        self.binary = require_nats()
        self.directory = directory
        self.port = free_port()
        self.mqtt_port = free_port()
        self.config = directory / "nats.conf"
        # The MQTT listener needs JetStream for sessions and a server name.
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "server_name: meterflow_test\n"
            f'jetstream {{ store_dir: "{directory / "jetstream"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def __enter__(self) -> Self:
        with (self.directory / "nats.log").open("wb") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        # The MQTT listener needs JetStream up first: it can take a few seconds.
        wait_for_listener(self._process, self.mqtt_port, 15, self.directory / "nats.log")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
