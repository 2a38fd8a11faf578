"""A broker that refuses us for a reason retrying cannot mend: said once, with the fix.

A wrong password or a protocol version the broker does not speak is refused again at
every reconnect; the daemon keeps trying (with capped backoff: an operator may fix the
broker rather than meterflow), but logs the refusal once, names it in `/readyz`, and
stays quiet about the repeats until something changes.
"""

from __future__ import annotations

import structlog

from ingest.errors import ConnectRefusedError

log = structlog.get_logger("meterflow.pipeline")

# MQTT 5 reason codes (3.1.1's read as these) that the same CONNECT meets again, and the fix.
FIXES = {
    0x84: 'the broker does not speak this MQTT version: set mqtt.protocol = "auto"',
    0x85: "the broker rejects this client id: choose another mqtt.client_id",
    0x86: "check mqtt.username and mqtt.password",
    0x87: "the broker does not let this user connect: check mqtt.username and its ACL",
    0x8A: "the broker has banned this client: ask its operator",
    0x8C: "the broker wants another authentication method",
}


class RefusalWatch:
    def __init__(self) -> None:
        self.refusal: str | None = None

    def connected(self) -> None:
        self.refusal = None

    def lost(self, error: BaseException) -> bool:
        """Note a failed connection; True if it is a lasting refusal (logged the first time)."""
        if not isinstance(error, ConnectRefusedError) or error.reason_code not in FIXES:
            self.refusal = None
            return False
        said = f"{error}; {FIXES[error.reason_code]}"
        if said != self.refusal:
            self.refusal = said
            log.error("broker refuses the connection", refusal=said)
        return True
