"""Tasmota: the ENERGY object of `tele/<topic>/SENSOR` (and STATUS replies), and the LWT.

Units from Tasmota's docs: Total kWh (a counter, presettable and resettable), Period Wh
since the previous telemetry, Power W (an array on multi-channel devices: summed),
Voltage V, Current A, ExportActive kWh (an export counter). A Voltage or Current of 0
next to a non-zero Power means the driver does not measure it. Time is the device's local
time without an offset unless SetOption52 adds one; only an offset or Epoch is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ingest.decode.base import Decoded, availability_handler, split_routes
from ingest.decode.common import (
    counter_value,
    epoch_seconds,
    json_object,
    optional_number,
    stamp,
)
from ingest.errors import FieldError
from ingest.settings import IngestSettings
from storage import DeviceType, Reading

TOPICS = ("tele/{device_id}/SENSOR", "tele/{device_id}/STATE", "tele/{device_id}/LWT")


class TasmotaDecoder:
    name = "tasmota"

    def __init__(
        self, topics: Sequence[str], device_type: DeviceType, limits: IngestSettings
    ) -> None:
        self._device_type = device_type
        self._limits = limits
        lwt = availability_handler(device_type, '"Online" or "Offline"')
        self.routes = split_routes(topics, "/LWT", lwt, self._telemetry)

    def _telemetry(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        if topic.endswith("/STATE"):
            return ()  # a heartbeat: relay state and Wi-Fi, no measurement
        document = json_object(payload)
        status = document.get("StatusSNS")
        if isinstance(status, dict):
            document = status
        energy = document.get("ENERGY")
        if energy is None:
            return ()  # another sensor (temperature, SML meters: a generic decoder's job)
        if not isinstance(energy, dict):
            raise FieldError("ENERGY", "expected an object")
        at, quality = stamp(_device_time(document), received_at, self._limits)
        power = optional_number(energy, "Power", "ENERGY.Power")
        voltage = _mean_nonzero(energy, "Voltage")
        current = optional_number(energy, "Current", "ENERGY.Current")
        if current == 0 and power:
            current = None
        total = counter_value(optional_number(energy, "Total", "ENERGY.Total"), "ENERGY.Total")
        period = optional_number(energy, "Period", "ENERGY.Period")
        device = captures["device_id"]
        readings = [
            Reading(
                topic, device, self._device_type, at,
                # The counter survives lost messages; Period (Wh) only when there is none.
                energy_kwh=None if total is not None or period is None else period / 1000,
                power_kw=None if power is None else power / 1000,
                voltage=voltage, current=current, quality=quality or "good",
                counter="total" if total is not None else None, counter_kwh=total,
            )
        ]  # fmt: skip
        export = counter_value(
            optional_number(energy, "ExportActive", "ENERGY.ExportActive"), "ENERGY.ExportActive"
        )
        if export is not None:
            readings.append(
                Reading(
                    topic, device, self._device_type, at, None, None,
                    quality=quality or "good", kind="production",
                    counter="export", counter_kwh=export,
                )
            )  # fmt: skip
        return readings


def _device_time(document: Mapping[str, object]) -> datetime | None:
    epoch = epoch_seconds(document.get("Epoch"))
    if epoch is not None:
        return epoch
    text = document.get("Time")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Without an offset it is the device's local time in an unknown zone.
    return moment if moment.tzinfo is not None else None


def _mean_nonzero(energy: Mapping[str, object], key: str) -> float | None:
    value = energy.get(key)
    values = value if isinstance(value, list) else [value]
    field = f"ENERGY.{key}"
    numbers = [optional_number({key: item}, key, field) for item in values if item is not None]
    measured = [n for n in numbers if n]
    return sum(measured) / len(measured) if measured else None
