"""What decoders share: numbers, units, time and availability, each refused by a FieldError
that names the field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ingest.errors import FieldError
from ingest.settings import IngestSettings

# Device clocks before this are unsynced (epoch 0, a fresh RTC): use the receive time.
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
UNSYNCED = "clock_unsynced"


def number(value: object, field: str) -> float:
    """A finite JSON number (or numeric text, as plain-number topics send), else FieldError."""
    if isinstance(value, bool):
        raise FieldError(field, f"expected a number, got {json.dumps(value)}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            raise FieldError(field, f"expected a number, got {text[:40]!r}") from None
    if not isinstance(value, int | float):
        raise FieldError(field, f"expected a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise FieldError(field, "expected a finite number")
    return float(value)


def optional_number(document: Mapping[str, object], key: str, field: str) -> float | None:
    """document[key] as a number (summed when the device sends one per channel), or None."""
    if key not in document or document[key] is None:
        return None
    value = document[key]
    if isinstance(value, list):
        return sum(number(item, f"{field}[{i}]") for i, item in enumerate(value))
    return number(value, field)


def lookup(document: object, path: str) -> object:
    """The value at a dotted path (`SML.Total_in`, `aenergy.total`), or None."""
    current = document
    for key in path.split("."):
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def json_object(payload: bytes) -> dict[str, object]:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldError("payload", f"is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise FieldError("payload", "expected a JSON object")
    return document


def stamp(
    device_time: datetime | None, received_at: datetime, limits: IngestSettings
) -> tuple[datetime, str | None]:
    """The time to store a reading at, and a quality flag when the device's was unusable."""
    if device_time is None:
        return received_at, None
    too_new = device_time - received_at > timedelta(seconds=limits.max_future_skew_s)
    too_old = received_at - device_time > timedelta(days=limits.max_age_days)
    if device_time < EARLIEST_PLAUSIBLE or too_new or too_old:
        return received_at, UNSYNCED
    return device_time, None


def epoch_seconds(value: object) -> datetime | None:
    """A UTC instant from epoch seconds (as Shelly and Tasmota deep sleep send), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


_AVAILABILITY = {
    "online": True, "offline": False, "true": True, "false": False, "1": True, "0": False,
}  # fmt: skip


def availability(payload: bytes) -> bool | None:
    """True for online, False for offline, None for neither.

    Accepts the shapes devices use for their last will: a bare word in any case
    (`Online`, Tasmota; `true`, Shelly; `1`, OpenDTU), a JSON string, or an object with `state` or
    `status` (Zigbee2MQTT's `{"state": "online"}`).
    """
    if len(payload) > 256:
        return None
    text = payload.decode("utf-8", "replace").strip()
    word: object = text
    if text[:1] in {"{", '"'}:
        try:
            document = json.loads(text)
        except ValueError:
            return None
        word = (
            document.get("state", document.get("status"))
            if isinstance(document, dict)
            else document
        )
    return _AVAILABILITY.get(word.lower()) if isinstance(word, str) else None


def percent(value: float | None, field: str) -> float | None:
    """A battery level or state of charge, within 0..100 %."""
    if value is not None and not 0 <= value <= 100:
        raise FieldError(field, f"expected a percentage within 0..100, got {value:g}")
    return value


def counter_value(value: float | None, field: str) -> float | None:
    """An energy counter, which counts up from zero."""
    if value is not None and value < 0:
        raise FieldError(field, f"expected a counter of 0 or more, got {value:g}")
    return value


def channel_device(device_id: str, channel: str | int) -> str:
    """The device id of one channel of a multi-channel device: the device's own for 0."""
    return device_id if str(channel) == "0" else f"{device_id}-ch{channel}"
