"""Whether the daemon is doing its job: the facts behind `/readyz` and `meterflow status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot of the daemon's readiness.

    Ready means connected to the broker, commits not failing for longer than the
    configured threshold, and no stall: messages in flight while nothing has committed
    for that long.
    """

    connected: bool
    database_ok: bool
    stalled: bool
    in_flight: int
    pending: int
    last_commit_age_s: float | None
    # The broker's lasting refusal of our connection, with the fix.
    broker_refusal: str | None = None

    @property
    def ready(self) -> bool:
        return self.connected and self.database_ok and not self.stalled

    @property
    def problems(self) -> list[str]:
        problems = []
        if self.broker_refusal is not None:
            problems.append(f"the broker refuses the connection: {self.broker_refusal}")
        elif not self.connected:
            problems.append("not connected to the broker")
        if not self.database_ok:
            problems.append("commits to the database are failing")
        if self.stalled:
            problems.append("messages are in flight but nothing has committed lately")
        return problems

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "problems": self.problems, **asdict(self)}
