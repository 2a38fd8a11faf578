"""meterflow's own format: canonical JSON on `<prefix>/<device_type>/<device_id>/telemetry`.

Turns one message into a reading (two for a battery: what it charged and what it gave
back), an availability change (`.../status`), or a dead letter that says why not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError

from ingest.decode.base import Decoded, Route
from ingest.decode.common import availability
from ingest.decode.patterns import TopicPattern
from ingest.decode.payload import Telemetry, parse_telemetry
from ingest.decode.topics import DEVICE_TYPES, Channel, DeviceTopic
from ingest.errors import PayloadError
from ingest.settings import IngestSettings
from partitions.naming import MIN_YEAR
from storage import Availability, DeadLetter, Reading, RejectKind


class CanonicalDecoder:
    """Decodes meterflow's canonical JSON payloads, through the router's routes.

    Its handlers never raise on bad input: every problem becomes a `DeadLetter` whose
    reason names the field and what is wrong with it.
    """

    name = "canonical"

    def __init__(self, topic_prefix: str, limits: IngestSettings) -> None:
        self._limits = limits
        self._max_skew = timedelta(seconds=limits.max_future_skew_s)
        self._max_age = timedelta(days=limits.max_age_days)
        prefix = topic_prefix.strip("/")
        self.routes = (
            Route(
                TopicPattern(f"{prefix}/{{device_type}}/{{device_id}}/telemetry"), self._telemetry
            ),
            Route(
                TopicPattern(f"{prefix}/{{device_type}}/{{device_id}}/status"),
                self._status,
                shareable=False,
            ),
        )

    # The router has matched the topic and checked the device id: only the device type is
    # left to check, without parsing the topic a second time.
    def _telemetry(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        parsed = _device(captures, "telemetry")
        if isinstance(parsed, str):
            return (self._reject(topic, payload, received_at, parsed, "topic"),)
        return self._readings(topic, parsed, payload, received_at)

    def _status(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        parsed = _device(captures, "status")
        if isinstance(parsed, str):
            return (self._reject(topic, payload, received_at, parsed, "topic"),)
        return (self._availability(topic, parsed, payload, received_at),)

    def _availability(
        self, topic: str, parsed: DeviceTopic, payload: bytes, received_at: datetime
    ) -> Availability | DeadLetter:
        online = availability(payload)
        if online is None:
            reason = 'status payload must be "online" or "offline" (or {"state": ...})'
            return self._reject(topic, payload, received_at, reason, "payload")
        return Availability(topic, parsed.device_id, parsed.device_type, online, received_at)

    def _readings(
        self, topic: str, parsed: DeviceTopic, payload: bytes, received_at: datetime
    ) -> Sequence[Reading | DeadLetter]:
        try:
            document = parse_telemetry(parsed.device_type, payload)
        except PayloadError as exc:
            # A ts that is not a time is a timestamp problem, as one out of range is.
            only_ts = all(error["loc"][:1] == ("ts",) for error in exc.error.errors())
            kind: RejectKind = "timestamp" if only_ts else "payload"
            return (self._reject(topic, payload, received_at, describe(exc.error), kind),)
        refusal = self._refusal(parsed, document, received_at)
        if refusal is not None:
            reason, kind = refusal
            return (self._reject(topic, payload, received_at, reason, kind),)
        return _readings(topic, parsed, document)

    def accepted(
        self, topic: str, parsed: DeviceTopic, document: Telemetry, received_at: datetime
    ) -> tuple[Reading, ...] | None:
        """The readings of a valid payload's values on `parsed`'s telemetry topic, as a
        message's; None where the message would be refused (a history import then takes
        the message's own path for the reason's words)."""
        if self._refusal(parsed, document, received_at) is not None:
            return None
        return _readings(topic, parsed, document)

    def _refusal(
        self, parsed: DeviceTopic, document: Telemetry, received_at: datetime
    ) -> tuple[str, RejectKind] | None:
        if document.device_id is not None and document.device_id != parsed.device_id:
            mismatch = (
                f"device_id {document.device_id!r} does not match the topic's {parsed.device_id!r}"
            )
            return mismatch, "device_mismatch"
        problem = self._time_problem(document.ts, received_at)
        return None if problem is None else (problem, "timestamp")

    def _time_problem(self, ts: datetime, received_at: datetime) -> str | None:
        if ts - received_at > self._max_skew:
            return (
                f"ts {ts.isoformat()} is more than {self._limits.max_future_skew_s:g}s "
                "in the future"
            )
        if received_at - ts > self._max_age or ts.year < MIN_YEAR:
            return f"ts {ts.isoformat()} is older than {self._limits.max_age_days} days"
        return None

    def _reject(
        self, topic: str, payload: bytes, received_at: datetime, reason: str, kind: RejectKind
    ) -> DeadLetter:
        return DeadLetter(
            topic=topic,
            payload=payload[: self._limits.dead_letter_max_bytes],
            reason=reason,
            received_at=received_at,
            kind=kind,
            payload_size=len(payload),
        )


def _device(captures: Mapping[str, str], channel: Channel) -> DeviceTopic | str:
    device_type = captures["device_type"]
    if device_type not in DEVICE_TYPES:
        return f"unknown device type {device_type!r}: expected one of {sorted(DEVICE_TYPES)}"
    return DeviceTopic(device_type, captures["device_id"], channel)  # type: ignore[arg-type]


def _readings(topic: str, parsed: DeviceTopic, document: Telemetry) -> tuple[Reading, ...]:
    """A valid message's reading; a battery's discharge is a second one."""
    interval_start = (
        None
        if document.interval_s is None
        else document.ts - timedelta(seconds=document.interval_s)
    )
    reading = Reading(
        topic=topic,
        device_id=parsed.device_id,
        device_type=parsed.device_type,
        recorded_at=document.ts,
        energy_kwh=document.energy_kwh,
        power_kw=document.power_kw,
        voltage=document.voltage,
        current=document.current,
        battery_pct=document.battery_pct,
        irradiance_wm2=document.irradiance_wm2,
        panel_temp_c=document.panel_temp_c,
        quality=document.quality,
        metadata=document.extra,
        interval_start=interval_start,
        state_of_charge=document.state_of_charge,
    )
    if document.discharge_energy_kwh is None and document.discharge_power_kw is None:
        return (reading,)
    # A battery's discharge is energy it produced: a reading of its own kind.
    discharge = Reading(
        topic=topic,
        device_id=parsed.device_id,
        device_type=parsed.device_type,
        recorded_at=document.ts,
        energy_kwh=document.discharge_energy_kwh,
        power_kw=document.discharge_power_kw,
        quality=document.quality,
        kind="production",
        interval_start=interval_start,
    )
    return (reading, discharge)


def describe(exc: ValidationError) -> str:
    """A validation error in one line of words: `field: problem; field: problem`."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            problems.append(f"payload is not valid JSON ({error['msg']})")
            continue
        location = ".".join(str(part) for part in error["loc"]) or "payload"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return "; ".join(problems)
