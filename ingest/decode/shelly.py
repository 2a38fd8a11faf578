"""Shelly: Gen2+ component status (`<prefix>/status/<component>:<id>`, `events/rpc`) and
Gen1 per-topic numbers (`shellies/<id>/emeter|relay/<i>/<metric>`), and availability.

Units from Shelly's API docs: every energy counter is Wh (aenergy.total, emdata total_act,
em1data total_act_energy; Gen1 emeter total), except Gen1's relay and emeter `energy`,
which are Watt-minutes and not persisted (a counter that restarts at 0 on reboot; the
counter logic treats that as a reset). Powers are W, signed on energy meters (negative =
export). Returned energy is exported energy: a production counter. A channel other than
0 is a device of its own, `<id>-ch<N>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ingest.decode.base import Decoded, Route, availability_handler
from ingest.decode.common import (
    channel_device,
    counter_value,
    epoch_seconds,
    json_object,
    lookup,
    number,
    optional_number,
    percent,
    stamp,
)
from ingest.decode.patterns import TopicPattern
from ingest.errors import FieldError
from ingest.settings import IngestSettings
from storage import DataType, DeviceType, Reading

TOPICS = (
    "{device_id}/status/{component}",
    "{device_id}/events/rpc",
    "{device_id}/online",
    "shellies/{device_id*}/emeter/{channel}/{metric}",
    "shellies/{device_id*}/relay/{channel}/{metric}",
    "shellies/{device_id*}/online",
    "shellies/{device_id*}/{other}",
    "shellies/announce",
)
WH = 1e-3
WATT_MINUTE = 1 / 60_000

# Gen1 per-topic metrics: measure and the factor to meterflow's unit. emeter's `energy`
# duplicates its persisted `total`, so only relays count Watt-minutes.
_GEN1: dict[tuple[str, str], tuple[str, float, DataType | None]] = {
    ("emeter", "power"): ("power", 1e-3, None),
    ("emeter", "voltage"): ("voltage", 1.0, None),
    ("emeter", "current"): ("current", 1.0, None),
    ("emeter", "total"): ("counter", WH, "consumption"),
    ("emeter", "total_returned"): ("counter", WH, "production"),
    ("relay", "power"): ("power", 1e-3, None),
    ("relay", "energy"): ("counter", WATT_MINUTE, "consumption"),
}


class ShellyDecoder:
    name = "shelly"

    def __init__(
        self, topics: Sequence[str], device_type: DeviceType, limits: IngestSettings
    ) -> None:
        self._device_type = device_type
        self._limits = limits
        self.routes = tuple(self._route(TopicPattern(t)) for t in topics)

    def _route(self, pattern: TopicPattern) -> Route:
        text = pattern.pattern
        if text.endswith("/online"):
            online = availability_handler(self._device_type, '"true" or "false"')
            return Route(pattern, online, shareable=False)
        if "component" in pattern.names:
            return Route(pattern, self._status)
        if text.endswith("/events/rpc"):
            return Route(pattern, self._rpc)
        if "metric" in pattern.names:
            return Route(pattern, self._gen1)
        return Route(pattern, _ignore)

    def _status(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        document = json_object(payload)
        return self._component(
            topic, captures["device_id"], captures["component"], document,
            at=received_at, quality=None,
        )  # fmt: skip

    def _rpc(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        frame = json_object(payload)
        if frame.get("method") not in {"NotifyStatus", "NotifyFullStatus"}:
            return ()
        params = frame.get("params")
        if not isinstance(params, dict):
            raise FieldError("params", "expected an object")
        # params.ts is there before the clock is synced (sys.unixtime still null).
        synced = lookup(params, "sys.unixtime") is not None or "sys" not in params
        device_time = epoch_seconds(params.get("ts")) if synced else None
        at, quality = stamp(device_time, received_at, self._limits)
        if not synced:
            quality = "clock_unsynced"
        decoded: list[Decoded] = []
        for key, value in params.items():
            if ":" in key and isinstance(value, dict):
                decoded.extend(
                    self._component(
                        topic, captures["device_id"], key, value, at=at, quality=quality
                    )
                )
        return decoded

    def _component(
        self,
        topic: str,
        device_id: str,
        component: str,
        document: Mapping[str, object],
        *,
        at: datetime,
        quality: str | None,
    ) -> list[Decoded]:
        kind, _, channel = component.partition(":")
        device = channel_device(device_id, channel or "0")
        reading = _Builder(topic, device, self._device_type, at, quality or "good")
        field = component
        if kind in {"switch", "pm1"}:
            total = _wh(document, "aenergy.total", field)
            returned = _wh(document, "ret_aenergy.total", field)
            if total is not None and returned is not None:
                # Shelly adds returned energy to aenergy too: consumption is the difference.
                total = max(total - returned, 0.0)
            reading.measure(document, "apower", "voltage", "current", field)
            reading.counters(total, returned, "aenergy", "ret_aenergy")
        elif kind == "em":
            reading.measure(document, "total_act_power", None, "total_current", field)
            reading.voltage = _mean_voltage(document, field)
        elif kind == "emdata":
            reading.counters(
                _wh(document, "total_act", field), _wh(document, "total_act_ret", field),
                "total_act", "total_act_ret",
            )  # fmt: skip
        elif kind == "em1":
            reading.measure(document, "act_power", "voltage", "current", field)
        elif kind == "em1data":
            reading.counters(
                _wh(document, "total_act_energy", field),
                _wh(document, "total_act_ret_energy", field),
                "total_act_energy", "total_act_ret_energy",
            )  # fmt: skip
        elif kind == "devicepower":
            value = lookup(document, "battery.percent")
            reading.battery = percent(
                None if value is None else number(value, f"{field}.battery.percent"),
                f"{field}.battery.percent",
            )
        else:
            return []  # temperature, sys, wifi, inputs: not energy
        return reading.build()

    def _gen1(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        block = "emeter" if "/emeter/" in topic else "relay"
        metric = _GEN1.get((block, captures["metric"]))
        if metric is None:
            return ()  # pf, reactive power, Watt-minutes duplicating a persisted total
        measure, scale, kind = metric
        value = number(payload.decode("utf-8", "replace"), captures["metric"]) * scale
        device = channel_device(captures["device_id"], captures["channel"])
        reading = _Builder(topic, device, self._device_type, received_at, "good")
        if measure == "counter":
            counter = counter_value(value, captures["metric"])
            if kind == "production":
                reading.counters(None, counter, "", captures["metric"])
            else:
                reading.counters(counter, None, captures["metric"], "")
        elif measure == "power":
            reading.power = value
        elif measure == "voltage":
            reading.voltage = value or None
        else:
            reading.current = value
        return reading.build()


class _Builder:
    """Collects one message's values into its consumption and production readings."""

    def __init__(
        self, topic: str, device: str, device_type: DeviceType, at: datetime, quality: str
    ) -> None:
        self.topic, self.device, self.device_type = topic, device, device_type
        self.at, self.quality = at, quality
        self.power: float | None = None
        self.voltage: float | None = None
        self.current: float | None = None
        self.battery: float | None = None
        self._import: tuple[str, float] | None = None
        self._export: tuple[str, float] | None = None

    def measure(
        self,
        document: Mapping[str, object],
        power: str,
        voltage: str | None,
        current: str,
        field: str,
    ) -> None:
        watts = optional_number(document, power, f"{field}.{power}")
        self.power = None if watts is None else watts / 1000
        if voltage is not None:
            self.voltage = optional_number(document, voltage, f"{field}.{voltage}") or None
        self.current = optional_number(document, current, f"{field}.{current}")

    def counters(
        self, imported: float | None, exported: float | None, import_name: str, export_name: str
    ) -> None:
        if imported is not None:
            self._import = (import_name, imported)
        # A returned-energy counter that never moved is a device that never exports.
        if exported:
            self._export = (export_name, exported)

    def build(self) -> list[Decoded]:
        decoded: list[Decoded] = []
        measured = (self.power, self.voltage, self.current, self.battery, self._import)
        if any(value is not None for value in measured):
            name, value = self._import or (None, None)
            decoded.append(
                Reading(
                    self.topic, self.device, self.device_type, self.at, None, self.power,
                    voltage=self.voltage, current=self.current, battery_pct=self.battery,
                    quality=self.quality, counter=name, counter_kwh=value,
                )
            )  # fmt: skip
        if self._export is not None:
            name, value = self._export
            decoded.append(
                Reading(
                    self.topic, self.device, self.device_type, self.at, None, None,
                    quality=self.quality, kind="production", counter=name, counter_kwh=value,
                )
            )  # fmt: skip
        return decoded


def _wh(document: Mapping[str, object], path: str, field: str) -> float | None:
    value = lookup(document, path)
    if value is None:
        return None
    return counter_value(number(value, f"{field}.{path}") * WH, f"{field}.{path}")


def _mean_voltage(document: Mapping[str, object], field: str) -> float | None:
    phases = [
        optional_number(document, f"{phase}_voltage", f"{field}.{phase}_voltage") for phase in "abc"
    ]
    live = [v for v in phases if v]
    return sum(live) / len(live) if live else None


def _ignore(
    _topic: str, _captures: Mapping[str, str], _payload: bytes, _received_at: datetime
) -> Sequence[Decoded]:
    return ()
