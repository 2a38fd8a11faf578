"""A RabbitMQ node of the test's own with its MQTT plugin (3.1.1 only before 3.13): the
Debian package's server, started on free ports with its state in the test's directory,
so the machine's own node is left as it is."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Self

import pytest

from tests.mosquitto import free_port, wait_for_listener

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
PLUGIN_DIRECTORIES = Path("/usr/lib/rabbitmq/lib")


def require_rabbitmq() -> None:
    """Skip the calling test, saying why, where RabbitMQ or its MQTT plugin is missing."""
    if not SERVER.exists():
        pytest.skip("rabbitmq-server is not installed: scripts/setup installs Debian's")
    if not any(PLUGIN_DIRECTORIES.glob("*/plugins/rabbitmq_mqtt-*")):
        pytest.skip("RabbitMQ's MQTT plugin (rabbitmq_mqtt) is not installed")


class RabbitMQ:
    def __init__(self, directory: Path) -> None:
        require_rabbitmq()
        self.directory = directory
        self.mqtt_port = free_port()
        amqp_port = free_port()
        (directory / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        self.env = os.environ | {
            "RABBITMQ_NODENAME": f"meterflow-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def __enter__(self) -> Self:
        with (self.directory / "server.log").open("wb") as log:
            self._process = subprocess.Popen(
                [str(SERVER)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_for_listener(self._process, self.mqtt_port, 60, self.directory / "server.log")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            # The whole group: the server script, the Erlang VM and its port helpers.
            os.killpg(self._process.pid, 9)
            self._process.wait(timeout=30)
