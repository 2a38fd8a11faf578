"""Every VERBATIM frame in tests/data/device-formats decodes to the readings its notes imply.

The frames are copied from ../shared/device-formats (real devices' documentation, source
and captures). Topics given there as templates (`stat/<topic>/STATUS10`) are replaced by
a concrete one; patterns for the families' non-default topics (custom FullTopic, STATUS
replies, a Shelly prefix containing '/') are configured as a user would. Units are
converted: Wh and Watt-minutes to kWh, W to kW.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.decode import Decoded
from meterflow.settings import load_settings
from storage import Availability, DeadLetter, Reading
from tests.helpers import router_for

FORMATS = Path(__file__).parent / "data" / "device-formats"
RECEIVED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

SML = {
    "fields": {
        "SML.Total_in": {"measure": "energy", "unit": "kWh", "cumulative": True},
        "SML.Total_out": {"measure": "energy", "unit": "kWh", "cumulative": True,
                          "kind": "production"},
        "SML.Power_curr": {"measure": "power", "unit": "W"},
    },
}  # fmt: skip


def _status_sns(family: dict[str, Any]) -> dict[str, Any]:
    return {"fields": {f"StatusSNS.{path}": spec for path, spec in family["fields"].items()}}


SETTINGS = load_settings(
    None,
    **{
        "decoders.enabled": ["tasmota", "shelly", "zigbee2mqtt", "sml", "sml_status", "main"],
        "decoders.topics": {
            "tasmota": [
                "tele/{device_id}/SENSOR", "tele/{device_id}/STATE", "tele/{device_id}/LWT",
                "emoncms/{site*}/{device_id}/tele/SENSOR", "stat/{device_id}/{reply}",
            ],
            "shelly": [
                "{device_id}/status/{component}", "shelly-ht/{device_id}/events/rpc",
                "{device_id}/online",
                "shellies/{device_id*}/emeter/{channel}/{metric}",
                "shellies/{device_id*}/relay/{channel}/{metric}",
                "shellies/{device_id*}/online", "shellies/{device_id*}/{other}",
                "shellies/announce",
            ],
        },
        "decoders.generic": [
            {"name": "sml", "topics": ["sml/{device_id}/SENSOR"], **SML},
            {"name": "sml_status", "topics": ["sml/{device_id}/STATUS10"], **_status_sns(SML)},
            {"name": "main", "topics": ["smlreader/{device_id}/SENSOR"], "fields": {
                "Main.counter_pos": {"measure": "energy", "unit": "kWh", "cumulative": True},
                "Main.counter_neg": {"measure": "energy", "unit": "kWh", "cumulative": True,
                                     "kind": "production"},
                "Main.power": {"measure": "power", "unit": "W"},
            }},
        ],
    },
)  # fmt: skip
ROUTER = router_for(SETTINGS)


@dataclass(frozen=True)
class Expect:
    """The parts of a reading the notes speak about; None where the frame has no value."""

    device: str
    kind: str = "consumption"
    power_kw: float | None = None
    voltage: float | None = None
    current: float | None = None
    battery: float | None = None
    counter: str | None = None
    counter_kwh: float | None = None
    energy_kwh: float | None = None
    quality: str = "good"


def online(device: str, state: bool = True) -> tuple[str, bool]:
    return device, state


# (file, index) -> (topic to publish on, or None for the frame's own; what it decodes to)
TABLE: dict[tuple[str, int], tuple[str | None, list[Expect | tuple[str, bool]]]] = {
    ("tasmota", 0): (None, [Expect("pow1", power_kw=2.635, voltage=227, current=11.661,
                                   counter="total", counter_kwh=6.294)]),
    ("tasmota", 1): (None, [Expect("denky_D6C0C0", power_kw=0.170, current=1.0,
                                   counter="total", counter_kwh=9098.245)]),
    ("tasmota", 2): (None, [Expect("pow1", power_kw=2.629, voltage=226, current=11.677,
                                   counter="total", counter_kwh=6.404)]),
    # Two channels: power summed; Current [0, 0] beside 8.15 W is unmeasured.
    ("tasmota", 3): ("stat/shelly25/STATUS10", [Expect("shelly25", power_kw=0.00815, voltage=237,
                                                       counter="total", counter_kwh=0.077)]),
    # Voltage 0.00 and Current 0.000 beside 47.11 W: unknown, not zero.
    ("tasmota", 4): ("stat/meter/STATUS10", [Expect("meter", power_kw=0.04711, counter="total",
                                                    counter_kwh=1290.396)]),
    # SML: no ENERGY object; a per-meter field map (a generic decoder) reads it.
    ("tasmota", 5): ("sml/reader/SENSOR", [
        Expect("reader", power_kw=0.281, counter="SML.Total_in", counter_kwh=20481.9505),
        Expect("reader", kind="production", counter="SML.Total_out", counter_kwh=10898.4095)]),
    ("tasmota", 6): ("sml/reader/STATUS10", [
        Expect("reader", power_kw=-0.894, counter="StatusSNS.SML.Total_in",
               counter_kwh=34507.4761),
        Expect("reader", kind="production", counter="StatusSNS.SML.Total_out",
               counter_kwh=14737.1422)]),
    ("tasmota", 7): ("sml/reader/STATUS10", [
        Expect("reader", power_kw=-0.036, counter="StatusSNS.SML.Total_in",
               counter_kwh=2687.3687),
        Expect("reader", kind="production", counter="StatusSNS.SML.Total_out",
               counter_kwh=582.4569)]),
    ("tasmota", 8): ("smlreader/reader/SENSOR", [
        Expect("reader", power_kw=0.376, counter="Main.counter_pos", counter_kwh=2711.720),
        Expect("reader", kind="production", counter="Main.counter_neg", counter_kwh=1.021)]),
    ("tasmota", 9): (None, []),  # STATE: a heartbeat
    ("tasmota", 10): (None, []),
    ("tasmota", 11): (None, []),
    ("tasmota", 12): (None, [online("tasmota_XXXXXX")]),
    ("tasmota", 13): (None, [online("tasmota_XXXXXX", False)]),
    ("shelly", 0): (None, [Expect("shelly1pmminig3-48f6ee8d12dc", power_kw=0.0257, voltage=239.7,
                                  current=0.188, counter="aenergy", counter_kwh=0.913252)]),
    ("shelly", 1): ("plus2pm/status/switch:0", [Expect("plus2pm", power_kw=0.0, voltage=237.0,
                                                       current=0.0, counter="aenergy",
                                                       counter_kwh=62.758285)]),
    ("shelly", 2): (None, [Expect("shelly3em", power_kw=0.10361,
                                  voltage=(236.0 + 236.4 + 237.8) / 3, current=1.094)]),
    # Phases A and B are unconnected (0 V): the voltage is phase C's.
    ("shelly", 3): ("pro3em/status/em:0", [Expect("pro3em", power_kw=0.142605, voltage=233.1,
                                                  current=1.192)]),
    ("shelly", 4): ("pro3em/status/emdata:0", [
        Expect("pro3em", counter="total_act", counter_kwh=95.88411),
        Expect("pro3em", kind="production", counter="total_act_ret", counter_kwh=5.12304)]),
    ("shelly", 5): (None, [Expect("shellyproem50", power_kw=-0.6073, voltage=236.7,
                                  current=2.681)]),
    # The clock is not synced yet (sys.unixtime null): receive time, flagged.
    ("shelly", 6): (None, [Expect("shelly-plus-ht-01", battery=100,
                                  quality="clock_unsynced")]),
    ("shelly", 8): (None, [online("shellypro2pm-30c6f7850a64", False)]),
    ("shelly", 9): (None, [Expect("shellyem3-C45BBE6A8F1F", power_kw=0.34031)]),
    ("shelly", 10): (None, []),  # power factor: not a column
    ("shelly", 11): (None, [Expect("shellyem3-C45BBE6A8F1F", current=2.10)]),
    ("shelly", 12): (None, [Expect("shellyem3-C45BBE6A8F1F", voltage=228.44)]),
    ("shelly", 13): (None, [Expect("shellyem3-C45BBE6A8F1F", counter="total",
                                   counter_kwh=3.0034)]),
    ("shelly", 14): (None, [Expect("shellyem3-C45BBE6A8F1F-ch1", kind="production",
                                   counter="total_returned", counter_kwh=5.2736)]),
    ("shelly", 15): (None, [Expect("shelly-plug-s1", power_kw=0.02058)]),
    ("shelly", 16): (None, [Expect("shelly-plug-s1", counter="energy",
                                   counter_kwh=94736 / 60_000)]),
    ("shelly", 17): (None, [Expect("shellyplug-s-C572BE", counter="energy",
                                   counter_kwh=6972 / 60_000)]),
    ("shelly", 18): (None, [online("shellies/shellyem3")]),
    ("shelly", 19): (None, []),  # announce
    ("shelly", 20): (None, []),  # info
    ("shelly", 21): (None, []),  # relay state
    ("zigbee2mqtt", 0): ("zigbee2mqtt/plug-1", [Expect("plug-1", power_kw=0.0, voltage=233,
                                                       current=0, counter="energy",
                                                       counter_kwh=1.92)]),
    ("zigbee2mqtt", 1): ("zigbee2mqtt/plug-1/availability", [online("plug-1")]),
    ("zigbee2mqtt", 2): (None, [online("bulb_color", False)]),
    ("zigbee2mqtt", 3): (None, []),  # the bridge itself
    ("zigbee2mqtt", 4): (None, []),
    # 3000 is the battery's mV, not mains volts.
    ("zigbee2mqtt", 7): (None, [Expect("0x00124b00252be456", battery=100)]),
    ("zigbee2mqtt", 8): ("zigbee2mqtt/sensor-2", [Expect("sensor-2", battery=100)]),
    ("zigbee2mqtt", 10): (None, [Expect("IKEA-Shortcut-Button1", battery=50)]),
}  # fmt: skip


def _frames() -> list[tuple[str, int, dict[str, str]]]:
    frames = []
    for family in ("tasmota", "shelly", "zigbee2mqtt", "homeassistant_discovery"):
        entries = json.loads((FORMATS / f"{family}.json").read_text())
        frames += [
            (family, i, e) for i, e in enumerate(entries) if e["notes"].startswith("VERBATIM")
        ]
    return frames


def _simple(item: Decoded) -> Expect | tuple[str, bool]:
    if isinstance(item, Availability):
        return online(item.device_id, item.online)
    assert isinstance(item, Reading), item.reason if isinstance(item, DeadLetter) else item
    return Expect(
        item.device_id, item.data_type, item.power_kw, item.voltage, item.current,
        item.battery_pct, item.counter, item.counter_kwh, item.energy_kwh, item.quality,
    )  # fmt: skip


def _rounded(expected: Expect | tuple[str, bool]) -> tuple[object, ...]:
    """Floats to 6 decimals, so that unit conversions compare exactly."""
    if isinstance(expected, tuple):
        return expected
    return tuple(round(v, 6) if isinstance(v, float) else v for v in astuple(expected))


@pytest.mark.parametrize(
    ("family", "index", "entry"),
    _frames(),
    ids=lambda value: str(value)[:30] if isinstance(value, str | int) else "",
)
def test_a_verbatim_frame_decodes_to_what_its_notes_imply(
    family: str, index: int, entry: dict[str, str]
) -> None:
    """Each verbatim frame: the readings, availability or nothing its notes describe."""
    if family == "homeassistant_discovery":
        # Configuration for consumers, not readings: no built-in decoder subscribes to it.
        everything = load_settings(
            None, **{"decoders.enabled": ["canonical", "tasmota", "shelly", "zigbee2mqtt"]}
        )
        router = router_for(everything)
        subscribed = [f for f in router.subscriptions(None) if _matches(f, entry["topic"])]
        assert subscribed == []
        return
    topic, expected = TABLE[(family, index)]
    decoded = ROUTER.decode(topic or entry["topic"], entry["payload"].encode(), RECEIVED)
    assert [_rounded(_simple(item)) for item in decoded] == [_rounded(e) for e in expected]
    for item in decoded:
        if isinstance(item, Reading) and item.quality == "good":
            assert item.recorded_at == RECEIVED  # no device clock in these frames is trusted


def _matches(topic_filter: str, topic: str) -> bool:
    """MQTT's filter matching: `+` one level, `#` the rest."""
    levels = topic.split("/")
    for i, part in enumerate(topic_filter.split("/")):
        if part == "#":
            return True
        if i >= len(levels) or part not in {"+", levels[i]}:
            return False
    return len(topic_filter.split("/")) == len(levels)


def test_every_verbatim_frame_has_an_expectation() -> None:
    """The table covers the data set: a new verbatim frame needs its expectation written."""
    frames = {(f, i) for f, i, _ in _frames() if f != "homeassistant_discovery"}
    assert frames == set(TABLE)
