"""Simulated smart meters and solar panels: the demo and the load generator.

Meters follow a household's daily load curve (a base load with morning and evening
peaks); panels follow daylight with passing clouds. A fraction of messages can be made
malformed on purpose, to watch the dead letters fill.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.decode.topics import TopicScheme
from storage import DeviceType
from storage.registry import Registration


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    device_id: str
    device_type: DeviceType
    scale: float  # household size for meters, peak kW for panels
    has_battery: bool
    # Where in its cycle the battery starts (percent) and how fast it drains (% per hour).
    battery_phase: float = 0.0
    battery_drain: float = 1.0


def fleet(count: int, rng: random.Random) -> list[SimulatedDevice]:
    """Four meters for every panel, as in a neighbourhood with some rooftop solar."""
    devices = []
    for number in range(count):
        solar = number % 5 == 4
        devices.append(
            SimulatedDevice(
                device_id=f"{'pv' if solar else 'meter'}-{number:05d}",
                device_type="solar_panel" if solar else "smart_meter",
                scale=rng.uniform(3.0, 8.0) if solar else rng.uniform(0.5, 1.5),
                has_battery=rng.random() < 0.3,
                battery_phase=rng.uniform(0.0, 100.0),
                battery_drain=rng.uniform(0.5, 4.0),
            )
        )
    return devices


def owners(devices: list[SimulatedDevice], users: int) -> list[Registration]:
    """The fleet shared among `users` households (`user-0001`, ...), in turn."""
    return [
        Registration(device.device_id, device.device_type, f"user-{number % users + 1:04d}")
        for number, device in enumerate(devices)
    ]


def _hour(at: datetime) -> float:
    return at.hour + at.minute / 60 + at.second / 3600


def meter_power_kw(at: datetime, scale: float, rng: random.Random) -> float:
    hour = _hour(at)
    morning = 1.2 * math.exp(-(((hour - 7.5) / 1.2) ** 2))
    evening = 2.0 * math.exp(-(((hour - 19.0) / 2.0) ** 2))
    return max(0.05, scale * (0.3 + morning + evening) * rng.uniform(0.85, 1.15))


def irradiance_wm2(at: datetime, rng: random.Random) -> float:
    daylight = math.sin(math.pi * (_hour(at) - 6.0) / 12.0)
    if daylight <= 0:
        return 0.0
    clouds = 1.0 if rng.random() > 0.2 else rng.uniform(0.2, 0.7)
    return 1000.0 * daylight * clouds


def reading(
    device: SimulatedDevice, at: datetime, interval_s: float, rng: random.Random
) -> dict[str, object]:
    """One canonical payload for `device` at `at`, covering the preceding interval."""
    document: dict[str, object] = {"device_id": device.device_id, "ts": _iso(at)}
    if device.device_type == "solar_panel":
        irradiance = irradiance_wm2(at, rng)
        power = device.scale * irradiance / 1000.0
        document |= {
            "irradiance_wm2": round(irradiance, 1),
            "panel_temp_c": round(12.0 + irradiance * 0.03, 1),
        }
    else:
        power = meter_power_kw(at, device.scale, rng)
    voltage = rng.gauss(230.0, 2.0)
    document |= {
        "energy_kwh": round(power * interval_s / 3600.0, 6),
        "power_kw": round(power, 4),
        "voltage": round(voltage, 1),
        "current": round(power * 1000.0 / voltage, 3),
    }
    if device.has_battery:
        drained = at.timestamp() / 3600.0 * device.battery_drain + device.battery_phase
        document["battery_pct"] = round(100.0 - drained % 100.0, 1)
    return document


def malformed(device: SimulatedDevice, at: datetime, rng: random.Random) -> bytes:
    """A payload the daemon must reject, of one of the kinds devices really send."""
    good = reading(device, at, 60.0, rng)
    choices: list[Callable[[], object]] = [
        lambda: "{not json",
        lambda: good | {"energy_kwh": -1.0},
        lambda: {k: v for k, v in good.items() if k != "ts"},
        lambda: good | {"device_id": "someone-else"},
        lambda: good | {"power_kw": "high"},
        lambda: good | {"ts": "yesterday"},
    ]
    value = rng.choice(choices)()
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def messages(
    devices: list[SimulatedDevice],
    scheme: TopicScheme,
    *,
    rate: float,
    bad_fraction: float,
    rng: random.Random,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[tuple[str, bytes]]:
    """An endless round-robin over the fleet: (topic, payload) pairs."""
    interval_s = len(devices) / rate
    while True:
        for device in devices:
            at = clock()
            topic = scheme.telemetry(device.device_type, device.device_id)
            if rng.random() < bad_fraction:
                yield topic, malformed(device, at, rng)
            else:
                yield topic, json.dumps(reading(device, at, interval_s, rng)).encode()


def paced(rate: float, duration_s: float) -> Iterator[int]:
    """Yields message numbers at `rate` per second for `duration_s`, sleeping in between."""
    started = time.monotonic()
    total = math.floor(rate * duration_s)
    for number in range(total):
        ahead = started + number / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        yield number
