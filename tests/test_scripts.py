"""The README's first command relies only on a broker it configured: scripts/broker."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from meterflow.publisher import Publisher
from tests.mosquitto import require_mosquitto

BROKER = Path(__file__).parents[1] / "scripts" / "broker"


@contextlib.contextmanager
def port_1883_taken() -> Iterator[None]:
    """Something else listens on 127.0.0.1:1883 (a stock Mosquitto on most machines here)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 1883)) == 0:
            yield
            return
    with socket.create_server(("127.0.0.1", 1883)):
        yield


def broker_url(directory: Path) -> str:
    done = subprocess.run(
        [str(BROKER), str(directory)], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def test_meterflows_broker_avoids_a_taken_1883_names_its_port_and_is_found_again(
    tmp_path: Path,
) -> None:
    require_mosquitto()
    state = tmp_path / "mosquitto"
    with port_1883_taken():
        url = broker_url(state)
        try:
            port = int(url.rsplit(":", 1)[1])
            assert url == f"mqtt://127.0.0.1:{port}"
            assert port != 1883
            assert "mosquitto.conf" in {path.name for path in state.iterdir()}
            with Publisher("127.0.0.1", port) as publisher:
                publisher.publish("meterflow-test/smart_meter/m-1/telemetry", b"{}")
                publisher.wait_acknowledged()
            assert broker_url(state) == url
        finally:
            os.kill(int((state / "mosquitto.pid").read_text()), signal.SIGTERM)
