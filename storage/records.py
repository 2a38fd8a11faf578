"""What the pipeline hands to storage: validated readings and rejected messages."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from partitions import Month

DeviceType = Literal[
    "smart_meter", "solar_panel", "battery_storage", "inverter", "ev_charger", "heat_pump"
]
# Why a message was rejected, in a word: a label for metrics, next to the readable reason.
RejectKind = Literal[
    "too_large",
    "topic",
    "payload",
    "device_mismatch",
    "timestamp",
    "unknown_device",
    "refused",
]
DataType = Literal["consumption", "production"]
# Where a device sits in a home's energy balance (storage/self_consumption.py): the grid
# connection's meter (import as consumption, export as production), a producer, a consumer,
# a battery. Unregistered, a device's role is its type's (ROLE_OF).
Role = Literal["grid", "production", "consumption", "battery"]
# The quality of a reading whose energy no device could have measured (storage/counters.py).
IMPLAUSIBLE = "implausible"
# What the writer does with a reading or status of a device the registry lacks.
UnknownDevices = Literal["register", "reject"]

# What a reading's energy is unless it says otherwise (`Reading.kind`): a battery's is what
# it charged, its discharge a reading of its own with the kind "production".
DATA_TYPE_OF: dict[DeviceType, DataType] = {
    "smart_meter": "consumption",
    "solar_panel": "production",
    "battery_storage": "consumption",
    "inverter": "production",
    "ev_charger": "consumption",
    "heat_pump": "consumption",
}


ROLE_OF: dict[DeviceType, Role] = {
    "smart_meter": "grid",
    "solar_panel": "production",
    "battery_storage": "battery",
    "inverter": "production",
    "ev_charger": "consumption",
    "heat_pump": "consumption",
}


class Reading(msgspec.Struct, frozen=True, omit_defaults=True):
    """One validated reading, in canonical units (kWh, kW, V, A, %), time in UTC.

    `energy_kwh` is energy over the interval since the device's previous reading. A device
    that reports a cumulative counter instead sets `counter` (its name, e.g. "import") and
    `counter_kwh`; the writer turns the counter into interval energy against the value it
    stored for that counter, in the batch's transaction, and sets `interval_start` to the
    time of the value it counted from. A reading may lack energy or power
    (a device that publishes one number per topic); `kind` overrides the data type its
    device type implies (a meter's export counter is production).

    `battery_pct` is a wireless device's own battery, which the registry's
    `battery_level` follows; `state_of_charge` is how full a storage battery (or the car on
    a charger) is, a measurement like power, stored with the reading alone.

    A msgspec Struct rather than a frozen dataclass: one is built per message, and it
    builds many times faster (docs/performance.md). A history import's decoding process
    sends them as MessagePack (ingest/history_process.py), without the fields left at
    their defaults: most readings leave most, and decoding them costs half as much.
    """

    topic: str
    device_id: str
    device_type: DeviceType
    recorded_at: datetime
    energy_kwh: float | None
    power_kw: float | None
    voltage: float | None = None
    current: float | None = None
    battery_pct: float | None = None
    irradiance_wm2: float | None = None
    panel_temp_c: float | None = None
    quality: str = "good"
    metadata: dict[str, Any] | None = None
    kind: DataType | None = None
    counter: str | None = None
    counter_kwh: float | None = None
    interval_start: datetime | None = None
    state_of_charge: float | None = None

    @property
    def data_type(self) -> DataType:
        return self.kind or DATA_TYPE_OF[self.device_type]

    def to_payload(self) -> bytes:
        """The reading as canonical JSON, for a dead letter that has to show it."""
        document = {name: getattr(self, name) for name in self.__struct_fields__ if name != "topic"}
        document["ts"] = document.pop("recorded_at").isoformat()
        return json.dumps(document, sort_keys=True, default=str).encode()


# What a reading fills of its stored row, in the order both backends' bulk statements take
# it. The row's owner (user_id) is looked up in the registry by the insert; id, `validated`
# and `created_at` are the database's. Columns most readings leave NULL come last
# (OPTIONAL_COLUMNS): a SQLite batch's rows end before those none of its readings fills.
ROW_COLUMNS: tuple[str, ...] = (
    "device_id",
    "data_type",
    "energy_amount",
    "instantaneous_power",
    "voltage",
    "current",
    "battery_pct",
    "irradiance_wm2",
    "panel_temp_c",
    "recorded_at",
    "quality",
    "metadata",
    "interval_start",
    "state_of_charge",
)
OPTIONAL_COLUMNS = ("interval_start", "state_of_charge")
READING_COLUMNS = ("user_id", *ROW_COLUMNS)


Row = tuple[object, ...]
_JSON = msgspec.json.Encoder()


def optional_width(readings: Sequence[Reading]) -> int:
    """How many of OPTIONAL_COLUMNS the readings' rows need, in order, to lose nothing."""
    if any(r.state_of_charge is not None for r in readings):
        return 2
    return 1 if any(r.interval_start is not None for r in readings) else 0


def reading_rows(
    readings: Sequence[Reading],
    times: Mapping[datetime, object],
    *,
    optional: int = len(OPTIONAL_COLUMNS),
) -> list[Row]:
    """The readings' rows in ROW_COLUMNS order, as both backends send them: each time as
    `times` gives it (SQLite's text, or the datetime itself), metadata as JSON text.
    Rows hold the first `optional` of OPTIONAL_COLUMNS, the others stay NULL.

    The hot half of the writer's work on the event loop: `times` is looked up once per
    reading, and a fleet reporting on the minute shares its times (see storage/sqlite.py).
    """
    rows: list[Row] = [
        (
            r.device_id,
            r.data_type,
            r.energy_kwh,
            r.power_kw,
            r.voltage,
            r.current,
            r.battery_pct,
            r.irradiance_wm2,
            r.panel_temp_c,
            times[r.recorded_at],
            r.quality,
            None if r.metadata is None else _JSON.encode(r.metadata).decode(),
        )
        for r in readings
    ]
    if optional == 0:
        return rows
    if optional == 1:
        return [
            (*row, None if r.interval_start is None else times[r.interval_start])
            for row, r in zip(rows, readings, strict=True)
        ]
    return [
        (*row, None if r.interval_start is None else times[r.interval_start], r.state_of_charge)
        for row, r in zip(rows, readings, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not become a reading, kept with the reason why."""

    topic: str
    payload: bytes
    reason: str
    received_at: datetime
    kind: RejectKind = "payload"
    payload_size: int = -1

    def __post_init__(self) -> None:
        if self.payload_size < 0:
            object.__setattr__(self, "payload_size", len(self.payload))


@dataclass(frozen=True, slots=True)
class Availability:
    """A device saying it is online or offline (a status message or its last will)."""

    topic: str
    device_id: str
    device_type: DeviceType
    online: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Everything one transaction stores."""

    readings: Sequence[Reading] = ()
    dead_letters: Sequence[DeadLetter] = ()
    availability: Sequence[Availability] = ()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a committed batch did."""

    inserted: int
    duplicates: int
    dead_letters: int
    created_partitions: Sequence[str] = field(default_factory=tuple)
    rejected: Mapping[RejectKind, int] = field(default_factory=Counter)
    statuses: int = 0
    # Readings stored with quality "implausible": energy no device could have measured.
    implausible: int = 0
    # Counter values that gave no energy and carried nothing else: no row stored.
    empty: int = 0


def by_month(readings: Sequence[Reading]) -> dict[Month, list[Reading]]:
    """The readings grouped by the UTC month they fall into, in batch order within each."""
    # Keyed by plain tuples: building and hashing a Month for every reading cost more
    # than the rest of the grouping.
    groups: dict[tuple[int, int], list[Reading]] = {}
    for reading in readings:
        at = reading.recorded_at
        if at.utcoffset():
            at = at.astimezone(UTC)
        key = (at.year, at.month)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append(reading)
    return {Month(*key): group for key, group in groups.items()}
