"""Zigbee2MQTT: device state objects on `zigbee2mqtt/<friendly_name>`, and availability.

Units from zigbee-herdsman-converters' exposes: energy and produced_energy kWh (counters),
power W, voltage V on mains devices but the battery's mV on battery devices (told apart by
magnitude), current A, battery %. Each message is the device's whole cached state, so a
counter repeats: the counter logic stores no energy for a repeat. last_seen is the time
of the last Zigbee message, not of the measurement: readings get the receive time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ingest.decode.base import Decoded, availability_handler, split_routes
from ingest.decode.common import (
    counter_value,
    json_object,
    optional_number,
    percent,
)
from ingest.settings import IngestSettings
from storage import DeviceType, Reading

TOPICS = ("zigbee2mqtt/{device_id}/availability", "zigbee2mqtt/{device_id*}")
# Battery devices report their battery's voltage in mV in the same key as mains volts.
MILLIVOLTS_FROM = 1000.0
_NOT_STATE = ("/set", "/get", "/availability")


class Zigbee2MqttDecoder:
    name = "zigbee2mqtt"

    def __init__(
        self, topics: Sequence[str], device_type: DeviceType, limits: IngestSettings
    ) -> None:
        self._device_type = device_type
        self._limits = limits
        on_availability = availability_handler(device_type, '{"state": "online"|"offline"}')
        self.routes = split_routes(topics, "/availability", on_availability, self._state)

    def _state(
        self, topic: str, captures: Mapping[str, str], payload: bytes, received_at: datetime
    ) -> Sequence[Decoded]:
        device = captures["device_id"]
        if device.startswith("bridge/") or device.endswith(_NOT_STATE):
            return ()
        document = json_object(payload)
        energy = counter_value(optional_number(document, "energy", "energy"), "energy")
        produced = counter_value(
            optional_number(document, "produced_energy", "produced_energy"), "produced_energy"
        )
        power = optional_number(document, "power", "power")
        battery = percent(optional_number(document, "battery", "battery"), "battery")
        if energy is None and produced is None and power is None and battery is None:
            return ()  # a remote, a bulb: nothing to meter
        voltage = optional_number(document, "voltage", "voltage")
        metadata = None
        if voltage is not None and voltage > MILLIVOLTS_FROM:
            metadata, voltage = {"battery_voltage_v": voltage / 1000}, None
        readings = [
            Reading(
                topic, device, self._device_type, received_at, None,
                None if power is None else power / 1000,
                voltage=voltage, current=optional_number(document, "current", "current"),
                battery_pct=battery, metadata=metadata,
                counter="energy" if energy is not None else None, counter_kwh=energy,
            )
        ]  # fmt: skip
        if produced is not None:
            readings.append(
                Reading(
                    topic, device, self._device_type, received_at, None, None,
                    kind="production", counter="produced_energy", counter_kwh=produced,
                )
            )  # fmt: skip
        return readings
