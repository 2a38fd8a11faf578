"""The canonical JSON payload, one pydantic model per device type, and its fast path.

Numbers are strict (a boolean or a string is not a number) and finite; physical bounds
reject what no meter or panel can report. Fields the model does not know are kept and
stored in the reading's `metadata`.

The pydantic models are the schema and write the rejection reasons. Every message first
goes through a msgspec mirror of them, about five times cheaper: it accepts a subset of
what the models accept (never more, tests/test_payload_fast_path.py checks it with
Hypothesis) and hands anything else to the models, so a rejected message reads the same.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from ingest.errors import PayloadError

MILLISECONDS_FROM = 1e11  # 1e11 seconds is the year 5138: larger epochs are milliseconds
MAX_INTERVAL_S = 31 * 86400  # a month's energy in one message at most


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
    # The seconds energy_kwh covers, ending at ts: the rollups spread it over them.
    interval_s: Annotated[Number, Field(gt=0, le=MAX_INTERVAL_S)] | None = None


class SmartMeterPayload(_Telemetry):
    """A smart meter's reading: energy consumed since its previous reading."""


class SolarPanelPayload(_Telemetry):
    """A solar panel's reading: energy produced since its previous reading."""

    irradiance_wm2: Annotated[Number, Field(ge=0, le=2000)] | None = None
    panel_temp_c: Annotated[Number, Field(ge=-60, le=150)] | None = None


class InverterPayload(_Telemetry):
    """An inverter's reading: energy it fed out since its previous reading."""


class HeatPumpPayload(_Telemetry):
    """A heat pump's reading: electrical energy consumed since its previous reading."""


StateOfCharge = Annotated[Number, Field(ge=0, le=100)]


class EvChargerPayload(_Telemetry):
    """An EV charger's reading: energy delivered since its previous reading, and the
    vehicle's state of charge (%) when the charger knows it."""

    state_of_charge: StateOfCharge | None = None


class BatteryStoragePayload(EvChargerPayload):
    """A storage battery's reading: energy_kwh and power_kw are what it charged, the
    discharge_ fields what it gave back, since its previous reading; state_of_charge (%)
    how full it is."""

    discharge_energy_kwh: Annotated[Number, Field(ge=0, le=100_000)] | None = None
    discharge_power_kw: Annotated[Number, Field(ge=0, le=100_000)] | None = None


PAYLOAD_MODELS: dict[str, type[_Telemetry]] = {
    "smart_meter": SmartMeterPayload,
    "solar_panel": SolarPanelPayload,
    "battery_storage": BatteryStoragePayload,
    "inverter": InverterPayload,
    "ev_charger": EvChargerPayload,
    "heat_pump": HeatPumpPayload,
}


class Telemetry(msgspec.Struct, frozen=True):
    """A valid payload's values, whichever path validated it."""

    ts: datetime
    energy_kwh: float
    power_kw: float
    voltage: float | None
    current: float | None
    battery_pct: float | None
    quality: str
    device_id: str | None
    extra: dict[str, Any] | None
    interval_s: float | None = None
    irradiance_wm2: float | None = None
    panel_temp_c: float | None = None
    state_of_charge: float | None = None
    discharge_energy_kwh: float | None = None
    discharge_power_kw: float | None = None


def parse_telemetry(device_type: str, payload: bytes) -> Telemetry:
    """Validate a canonical payload of `device_type`; PayloadError says what is wrong."""
    fast = _fast_path(device_type, payload)
    if fast is not None:
        return fast
    try:
        document = PAYLOAD_MODELS[device_type].model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(exc) from None
    return _telemetry(document, document.ts, document.model_extra or None)


def _telemetry(
    document: _Telemetry | _FastTelemetry, ts: datetime, extra: dict[str, Any] | None
) -> Telemetry:
    """Either path's validated document as Telemetry; a type's own fields from its own.

    Positional, in Telemetry's order: one is built per message, and keywords cost more.
    """
    own = _OWN_FIELDS.get(type(document))
    return Telemetry(
        ts,
        document.energy_kwh,
        document.power_kw,
        document.voltage,
        document.current,
        document.battery_pct,
        document.quality,
        document.device_id,
        extra,
        document.interval_s,
        *(() if own is None else own(document)),
    )


# The msgspec mirror. Bounds and types repeat the models' own; a field the models do not
# declare must not be declared here either, or it would leave `extra`.
_Power = Annotated[float, msgspec.Meta(ge=0, le=100_000)]


class _FastTelemetry(msgspec.Struct, forbid_unknown_fields=True):
    ts: str | float
    energy_kwh: _Power
    power_kw: _Power
    device_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    voltage: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    current: _Power | None = None
    battery_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    quality: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] = "good"
    interval_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_INTERVAL_S)] | None = None


class _FastSolar(_FastTelemetry, forbid_unknown_fields=True):
    irradiance_wm2: Annotated[float, msgspec.Meta(ge=0, le=2000)] | None = None
    panel_temp_c: Annotated[float, msgspec.Meta(ge=-60, le=150)] | None = None


class _FastCharged(_FastTelemetry, forbid_unknown_fields=True):
    state_of_charge: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None


class _FastBattery(_FastCharged, forbid_unknown_fields=True):
    discharge_energy_kwh: _Power | None = None
    discharge_power_kw: _Power | None = None


# The values of Telemetry's last fields, from irradiance_wm2 on, that only some device
# types' documents have, by document class: one lookup per message, nothing more for the
# types without any.
_SOLAR_FIELDS = operator.attrgetter("irradiance_wm2", "panel_temp_c")
_CHARGED_FIELDS = operator.attrgetter("state_of_charge")
_BATTERY_FIELDS = operator.attrgetter(
    "state_of_charge", "discharge_energy_kwh", "discharge_power_kw"
)


def _charged(document: object) -> tuple[Any, ...]:
    return (None, None, _CHARGED_FIELDS(document))


def _battery(document: object) -> tuple[Any, ...]:
    return (None, None, *_BATTERY_FIELDS(document))


_OWN_FIELDS: dict[type, Callable[[object], tuple[Any, ...]]] = {
    SolarPanelPayload: _SOLAR_FIELDS,
    _FastSolar: _SOLAR_FIELDS,
    EvChargerPayload: _charged,
    _FastCharged: _charged,
    BatteryStoragePayload: _battery,
    _FastBattery: _battery,
}
_FAST_MODELS: dict[str, type[_FastTelemetry]] = {
    "smart_meter": _FastTelemetry,
    "solar_panel": _FastSolar,
    "battery_storage": _FastBattery,
    "inverter": _FastTelemetry,
    "ev_charger": _FastCharged,
    "heat_pump": _FastTelemetry,
}
_FAST_FIELDS = {name: frozenset(model.__struct_fields__) for name, model in _FAST_MODELS.items()}
_DOCUMENT = msgspec.json.Decoder(dict[str, Any])


def _fast_path(device_type: str, payload: bytes) -> Telemetry | None:
    """The payload's values if msgspec alone can vouch for them; None to ask the models."""
    try:
        raw = _DOCUMENT.decode(payload)
    except msgspec.MsgspecError:
        return None
    unknown = raw.keys() - _FAST_FIELDS[device_type]
    extra = None
    if unknown:
        extra = {key: value for key, value in raw.items() if key in unknown}
        for key in unknown:
            del raw[key]
    return _vouched(device_type, raw, extra)


def vouched_telemetry(device_type: str, document: dict[str, Any]) -> Telemetry | None:
    """A parsed payload's values if msgspec alone can vouch for them: what `parse_telemetry`
    makes of the document's JSON, without the JSON. None to take that path, also where the
    document has fields the models would keep as metadata (JSON would turn a NaN among
    them into null)."""
    if not document.keys() <= _FAST_FIELDS[device_type]:
        return None
    return _vouched(device_type, document, None)


def _vouched(
    device_type: str, known: dict[str, Any], extra: dict[str, Any] | None
) -> Telemetry | None:
    try:
        document = msgspec.convert(known, _FAST_MODELS[device_type])
        ts = _cached_timestamp(document.ts)
    except (msgspec.MsgspecError, ValueError):
        return None
    return _telemetry(document, ts, extra)


# A fleet reporting on the minute sends the same timestamp many times over; converting
# each text once saves a third of the fast path's time. Keys are str or float only.
_cached_timestamp = functools.lru_cache(maxsize=4096)(utc_timestamp)
