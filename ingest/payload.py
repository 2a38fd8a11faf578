"""The canonical JSON payload, one pydantic model per device type.

Numbers are strict (a boolean or a string is not a number) and finite; physical bounds
reject what no meter or panel can report. Fields the model does not know are kept and
stored in the reading's `metadata`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

MILLISECONDS_FROM = 1e11  # 1e11 seconds is the year 5138: larger epochs are milliseconds


def utc_timestamp(value: object) -> datetime:
    """ISO 8601 with an offset, or epoch seconds or milliseconds, as UTC to the millisecond."""
    if isinstance(value, bool):
        raise ValueError("ts must be ISO 8601 text or an epoch number, not a boolean")  # noqa: TRY004
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("ts must be a finite number")
        seconds = value / 1000 if abs(value) >= MILLISECONDS_FROM else value
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"{value} is outside the representable range") from exc
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value[:40]!r} is not ISO 8601") from exc
        if moment.tzinfo is None:
            raise ValueError("ts needs a UTC offset (e.g. Z or +01:00)")
    else:
        raise ValueError("ts must be ISO 8601 text or epoch seconds/milliseconds")  # noqa: TRY004
    try:
        utc = moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("ts is outside the representable range") from exc
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


Timestamp = Annotated[datetime, PlainValidator(utc_timestamp)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Telemetry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    device_id: Annotated[str | None, Field(strict=True, max_length=128)] = None
    ts: Timestamp
    energy_kwh: Annotated[Number, Field(ge=0, le=100_000)]
    power_kw: Annotated[Number, Field(ge=0, le=100_000)]
    voltage: Annotated[Number, Field(ge=0, le=1_000_000)] | None = None
    current: Annotated[Number, Field(ge=0, le=100_000)] | None = None
    battery_pct: Annotated[Number, Field(ge=0, le=100)] | None = None
    quality: Annotated[str, Field(strict=True, min_length=1, max_length=32)] = "good"


class SmartMeterPayload(_Telemetry):
    """A smart meter's reading: energy consumed since its previous reading."""


class SolarPanelPayload(_Telemetry):
    """A solar panel's reading: energy produced since its previous reading."""

    irradiance_wm2: Annotated[Number, Field(ge=0, le=2000)] | None = None
    panel_temp_c: Annotated[Number, Field(ge=-60, le=150)] | None = None


PAYLOAD_MODELS: dict[str, type[_Telemetry]] = {
    "smart_meter": SmartMeterPayload,
    "solar_panel": SolarPanelPayload,
}
