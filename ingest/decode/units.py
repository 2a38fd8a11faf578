"""Units devices report in, and the factors to meterflow's: kWh, kW, V, A, %."""

from __future__ import annotations

from typing import Literal

# "battery" is a wireless device's own battery level, "state_of_charge" how full a storage
# battery (or an EV on its charger) is: both in %, kept apart (storage.Reading).
Measure = Literal["energy", "power", "voltage", "current", "battery", "state_of_charge"]

# Factors to meterflow's units: kWh, kW, V, A, %.
UNITS: dict[Measure, dict[str, float]] = {
    "energy": {"Wh": 1e-3, "kWh": 1.0, "MWh": 1e3, "Wmin": 1 / 60_000, "mWh": 1e-6,
               "J": 1 / 3.6e6, "kJ": 1 / 3.6e3, "MJ": 1 / 3.6},
    "power": {"mW": 1e-6, "W": 1e-3, "kW": 1.0, "MW": 1e3},
    "voltage": {"mV": 1e-3, "V": 1.0, "kV": 1e3},
    "current": {"mA": 1e-3, "A": 1.0},
    "battery": {"%": 1.0},
    "state_of_charge": {"%": 1.0},
}  # fmt: skip


def factor(measure: Measure, unit: str) -> float:
    try:
        return UNITS[measure][unit]
    except KeyError:
        known = ", ".join(UNITS[measure])
        raise ValueError(f"{unit!r} is not a unit of {measure} (one of {known})") from None
