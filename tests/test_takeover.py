"""Two clients with one client id: said once, clearly, with the client id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ingest.errors import BrokerError, SessionTakenOverError
from ingest.takeover import IN_A_ROW, SHORT_LIVED_S, TakeoverWatch
from tests.mosquitto import Mosquitto
from tests.process import DaemonProcess


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_takeover_the_broker_names_is_logged_once_however_often_it_happens() -> None:
    watch = TakeoverWatch("meterflow-1", Clock())
    with capture_logs() as logs:
        for _ in range(5):
            watch.connected()
            assert watch.lost(SessionTakenOverError("broker disconnected us"))
    assert [(line["event"][:20], line["client_id"]) for line in logs] == [
        ("session taken over: ", "meterflow-1")
    ]


def test_connections_that_keep_ending_at_once_count_as_a_takeover_and_a_lasting_one_resets() -> (
    None
):
    clock = Clock()
    watch = TakeoverWatch("meterflow-1", clock)
    lost = BrokerError("connection lost: closed by the broker")
    outcomes = []
    with capture_logs() as logs:
        for _ in range(IN_A_ROW + 1):
            watch.connected()
            clock.now += 1
            outcomes.append(watch.lost(lost))
        watch.connected()
        clock.now += SHORT_LIVED_S
        outcomes.append(watch.lost(lost))
        outcomes.append(watch.lost(lost))  # never connected: the broker is away
    assert outcomes == [False] * (IN_A_ROW - 1) + [True, True, False, False]
    assert len(logs) == 1
    assert logs[0]["broker_said"] is False


@pytest.mark.mqtt
async def test_two_daemons_with_one_client_id_say_so_once_each_at_most(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    first = DaemonProcess(broker.url, tmp_path / "one.db", prefix, tmp_path / "one.log")
    second = DaemonProcess(broker.url, tmp_path / "two.db", prefix, tmp_path / "two.log")
    with first, second:
        await asyncio.sleep(4)
        logs = [first.log(), second.log()]
    said = [log.count("session taken over: another client") for log in logs]
    assert max(said) == 1, logs
    assert all("session taken over" not in line for log in logs
               for line in log.splitlines() if "broker unavailable" in line)  # fmt: skip
    assert '"client_id": "meterflow-' in logs[said.index(1)]
