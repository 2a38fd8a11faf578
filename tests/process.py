"""The daemon as a separate process, for tests that kill it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

METERFLOW = str(Path(sys.executable).with_name("meterflow"))


class DaemonProcess:
    def __init__(
        self,
        broker_url: str,
        database: Path | str,
        prefix: str,
        log_path: Path,
        **extra_env: str,
    ) -> None:
        url = f"sqlite:///{database}" if isinstance(database, Path) else database
        self.command = [METERFLOW, "run", "--broker", broker_url, "--db", url]
        self.env = os.environ | {
            "METERFLOW_MQTT__TOPIC_PREFIX": prefix,
            "METERFLOW_MQTT__CLIENT_ID": f"meterflow-{prefix}",
            "METERFLOW_MQTT__RECONNECT_INITIAL_S": "0.1",
            "METERFLOW_MQTT__RECONNECT_MAX_S": "1",
            "METERFLOW_BATCH__MAX_MESSAGES": "500",
            "METERFLOW_BATCH__MAX_DELAY_MS": "50",
            "METERFLOW_LOG__FORMAT": "json",
            "METERFLOW_LOG__SUMMARY_INTERVAL_S": "1",
            **extra_env,
        }
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subscribed = self.log().count('"subscribed"') + 1
        self._spawn()
        self.wait_for_log('"subscribed"', occurrences=subscribed)

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log)

    @contextlib.contextmanager
    def started_in_background(self) -> Iterator[Self]:
        """Started without waiting for it to subscribe; killed afterwards if still running."""
        self._spawn()
        with self:
            yield self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, occurrences: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < occurrences:
            process = self._process
            if process is not None and process.poll() is not None:
                raise AssertionError(f"daemon exited with {process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text} in the daemon's log:\n{self.log()}")
            time.sleep(0.02)

    def last_summary(self, event: str = "stopped") -> dict[str, Any]:
        """The daemon's last log line for `event`, parsed."""
        lines = [line for line in self.log().splitlines() if f'"event": "{event}"' in line]
        assert lines, f"no {event} line in the daemon's log:\n{self.log()}"
        summary: dict[str, Any] = json.loads(lines[-1])
        return summary

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def signal(self, signum: int) -> None:
        if self._process is not None:
            self._process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self._process is not None
        code = self._process.wait(timeout=timeout)
        self._process = None
        return code

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.kill()
