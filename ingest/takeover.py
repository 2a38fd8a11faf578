"""Telling a session taken over from a broker going away.

Two clients with one client id take the session from each other for as long as both run:
every few seconds each is disconnected. MQTT 5 brokers say so (DISCONNECT reason 0x8E);
older ones just close the connection, so connections that keep ending within seconds of
being made count as the same. Either is logged once, naming the client id and the fix,
instead of a warning per reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from ingest.errors import SessionTakenOverError

log = structlog.get_logger("meterflow.pipeline")

# Connections ending this soon after being made, this many times in a row, look like a
# takeover on a broker that does not say so.
SHORT_LIVED_S = 5.0
IN_A_ROW = 3


class TakeoverWatch:
    def __init__(self, client_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._client_id = client_id
        self._clock = clock
        self._since: float | None = None
        self._short_in_a_row = 0
        self._reported = False

    def connected(self) -> None:
        self._since = self._clock()

    def lost(self, error: BaseException) -> bool:
        """Note a lost connection; True if it was taken over (logged the first time)."""
        lasted = None if self._since is None else self._clock() - self._since
        self._since = None
        if lasted is not None and lasted >= SHORT_LIVED_S:
            self._short_in_a_row, self._reported = 0, False
        elif lasted is not None:
            self._short_in_a_row += 1
        said = isinstance(error, SessionTakenOverError)
        if not said and self._short_in_a_row < IN_A_ROW:
            return False
        if not self._reported:
            self._reported = True
            log.error(
                "session taken over: another client is connected with this client id, and "
                "the broker hands the session back and forth; give each daemon its own "
                "mqtt.client_id (daemons sharing the load also set one mqtt.shared_group)",
                client_id=self._client_id,
                broker_said=said,
            )
        return True
