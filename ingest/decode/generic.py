"""Device families described by configuration alone ([[decoders.generic]] in the config).

With a `{field}` level in the topic pattern, each message is one plain number and the
field's name is that level (`solar/{device_id}/0/{field}`); otherwise the payload is a
JSON object and each configured field is a dotted path into it (`SML.Total_in`). Each
field says what it measures, in which unit, whether an energy value is a counter, and
whether it is consumption or production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.decode.base import Decoded, Route, availability_handler
from ingest.decode.common import (
    counter_value,
    epoch_seconds,
    json_object,
    lookup,
    number,
    percent,
    stamp,
)
from ingest.decode.patterns import TopicPattern
from ingest.decode.units import factor
from ingest.errors import ConfigError, FieldError
from ingest.settings import GenericDecoderSettings, GenericField, IngestSettings
from storage import DATA_TYPE_OF, Availability, DataType, Reading


class GenericDecoder:
    def __init__(self, config: GenericDecoderSettings, limits: IngestSettings) -> None:
        self.name = config.name
        self._config = config
        self._limits = limits
        energy_kinds = [
            self._kind(spec) for spec in config.fields.values() if spec.measure == "energy"
        ]
        if len(energy_kinds) != len(set(energy_kinds)):
            raise ConfigError(
                f"decoder {config.name!r}: two energy fields of the same kind; a reading "
                "has one energy value per kind (consumption, production)"
            )
        self.routes = (
            *(Route(TopicPattern(t), self._measurements) for t in config.topics),
            *(
                Route(TopicPattern(t), self._availability, shareable=False)
                for t in config.availability_topics
            ),
        )
        self._default_availability = availability_handler(
            config.device_type, "online/offline or true/false"
        )

    def _kind(self, spec: GenericField) -> DataType:
        return spec.kind or DATA_TYPE_OF[self._config.device_type]

    def _availability(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        codes = self._config.availability_values
        if not codes:
            return self._default_availability(topic, captures, payload, received_at)
        value = self._plain_value(payload)
        code = None if value is None else str(value).strip()
        if code not in codes:
            raise FieldError("payload", f"expected one of {sorted(codes)}")
        online = codes[code]
        return (Availability(topic, captures["device_id"], self._config.device_type, online,
                             received_at),)  # fmt: skip

    def _plain_value(self, payload: bytes) -> object:
        """The value of a one-value message: the text itself, or, with `value_path`, what a
        JSON object holds there; None for an empty message or a null."""
        text = payload.decode("utf-8", "replace").strip()
        if not text:
            return None
        path = self._config.value_path
        if path is None:
            return None if text == "null" else text
        value = lookup(json_object(payload), path)
        return None if value is None else value

    def _measurements(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        config = self._config
        device_time = None
        if "field" in captures:
            name = captures["field"]
            if name not in config.fields:
                return ()  # a value this family publishes that nobody mapped
            value = self._plain_value(payload)
            if value is None:
                return ()  # "no value" (an absent phase, a device at night)
            values = {name: number(value, name)}
        else:
            document = json_object(payload)
            present = {path: lookup(document, path) for path in config.fields}
            if all(value is None for value in present.values()):
                raise FieldError(", ".join(config.fields), "none of these fields is present")
            values = {path: number(v, path) for path, v in present.items() if v is not None}
            if config.timestamp is not None:
                device_time = _device_time(lookup(document, config.timestamp), config)
                if device_time is None:
                    raise FieldError(config.timestamp, f"expected a {config.timestamp_format} time")
        at, quality = stamp(device_time, received_at, self._limits)
        readings: dict[DataType, _Values] = {}
        for name, raw in values.items():
            spec = config.fields[name]
            value = raw if spec.round is None else round(raw, spec.round)
            kind = self._kind(spec)
            if spec.negative_is_production or spec.positive_is_production:
                produced = value < 0 if spec.negative_is_production else value > 0
                kind = "production" if produced else "consumption"
                value = abs(value)
            readings.setdefault(kind, _Values()).set(name, spec, value)
        return [
            Reading(
                topic, captures["device_id"], config.device_type, at, v.energy, v.power,
                voltage=v.voltage, current=v.current, battery_pct=v.battery,
                quality=quality or "good", kind=kind, counter=v.counter, counter_kwh=v.counted,
                state_of_charge=v.state_of_charge,
            )
            for kind, v in readings.items()
        ]  # fmt: skip


@dataclass(slots=True)
class _Values:
    """One reading's values, in meterflow's units, as the configured fields give them."""

    energy: float | None = None
    power: float | None = None
    voltage: float | None = None
    current: float | None = None
    battery: float | None = None
    state_of_charge: float | None = None
    counter: str | None = None
    counted: float | None = None

    def set(self, name: str, spec: GenericField, value: float) -> None:
        scaled = value * factor(spec.measure, spec.unit)
        if spec.measure == "energy" and spec.cumulative:
            self.counter, self.counted = name, counter_value(scaled, name)
        elif spec.measure == "energy":
            self.energy = counter_value(scaled, name)
        elif spec.measure == "power":
            self.power = scaled
        elif spec.measure == "voltage":
            self.voltage = scaled
        elif spec.measure == "current":
            self.current = scaled
        elif spec.measure == "state_of_charge":
            self.state_of_charge = percent(scaled, name)
        else:
            self.battery = percent(scaled, name)


def _device_time(value: object, config: GenericDecoderSettings) -> datetime | None:
    if config.timestamp_format == "epoch_s":
        return epoch_seconds(value)
    if config.timestamp_format == "epoch_ms":
        return epoch_seconds(value / 1000) if isinstance(value, int | float) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
