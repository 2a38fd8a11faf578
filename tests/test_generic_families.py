"""The generic decoder against real device families' frames: a value per topic wrapped in
JSON, "no value" nulls, broad subscriptions, float32 artefacts, signed grid power and
numeric status codes; three unlike families end to end.

Frames, and where they come from:
- Victron GX (Venus OS, dbus-flashmq): `N/<portal id>/<service>/<instance>/<path>` with
  `{"value": ...}`; `N/<id>/pvinverter/20/Ac/Power {"value": 926}` and
  `.../solarcharger/279/Dc/0/Voltage {"value":20.43000030517578}` are the README's own
  examples (victronenergy/dbus-flashmq, README.md), the portal id `e0ff50a097c0` that of
  victronenergy/venus-html5-app, TOPICS.md; null is sent when a device disappears (same
  README, "No more retained messages"). A grid meter's /Ac/Power is negative when feeding
  the grid (Victron's D-Bus documentation, com.victronenergy.grid).
- OpenDTU: `solar/<serial>/0/<field>` plain numbers and `solar/<serial>/status/reachable`
  "0"/"1" (tbnobody/OpenDTU, docs/MQTT_Topics.md; the serial 114190641177 from
  wuan/mqtt-gateway, src/data/opendtu/readme.md).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.decode import Router
from meterflow.publisher import Publisher
from meterflow.settings import load_settings
from storage import Availability, DeadLetter, Reading
from tests.helpers import make_settings, query, router_for, running_daemon, wait_until
from tests.mosquitto import Mosquitto

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PORTAL = "e0ff50a097c0"

VICTRON_PV: dict[str, Any] = {
    "name": "victron_pv",
    "topics": ["N/{device_id*}/Ac/{field}"],
    "device_type": "solar_panel",
    "value_path": "value",
    "unmatched": "ignore",
    "fields": {"Power": {"measure": "power", "unit": "W", "round": 1}},
}
VICTRON_CHARGER: dict[str, Any] = {
    "name": "victron_charger",
    "topics": ["N/{device_id*}/Dc/0/{field}"],
    "device_type": "solar_panel",
    "value_path": "value",
    "fields": {
        "Voltage": {"measure": "voltage", "unit": "V", "round": 2},
        "Current": {"measure": "current", "unit": "A", "round": 2},
    },
}
VICTRON_GRID: dict[str, Any] = {
    "name": "victron_grid",
    "topics": ["G/{device_id*}/Ac/{field}"],
    "value_path": "value",
    "fields": {"Power": {"measure": "power", "unit": "W", "negative_is_production": True}},
}
OPENDTU: dict[str, Any] = {
    "name": "opendtu",
    "topics": ["solar/{device_id}/0/{field}"],
    "availability_topics": ["solar/{device_id}/status/reachable"],
    "availability_values": {"1": True, "0": False},
    "device_type": "solar_panel",
    "fields": {
        "yieldtotal": {"measure": "energy", "unit": "kWh", "cumulative": True},
        "power": {"measure": "power", "unit": "W"},
    },
}
JSON_METER: dict[str, Any] = {
    "name": "meter",
    "topics": ["meters/{device_id}/state"],
    "fields": {
        "import.total": {"measure": "energy", "unit": "Wh", "cumulative": True},
        "power": {"measure": "power", "unit": "kW"},
    },
}
FAMILIES = [VICTRON_PV, VICTRON_CHARGER, VICTRON_GRID, OPENDTU, JSON_METER]


def router(*families: dict[str, Any]) -> Router:
    names = [family["name"] for family in families]
    settings = load_settings(None, **{"decoders.enabled": names, "decoders.generic": families})
    return router_for(settings)


def one(decoded: object) -> Any:
    assert isinstance(decoded, list | tuple)
    assert len(decoded) == 1, decoded
    return decoded[0]


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b'{"value": 926}',
         ("power_kw", f"{PORTAL}/pvinverter/20", "production", 0.926)),
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b'{"value": 64.699996948242188}',
         ("power_kw", f"{PORTAL}/pvinverter/20", "production", 0.0647)),
        (f"N/{PORTAL}/solarcharger/279/Dc/0/Voltage", b'{"value":20.43000030517578}',
         ("voltage", f"{PORTAL}/solarcharger/279", "production", 20.43)),
        (f"G/{PORTAL}/grid/30/Ac/Power", b'{"value": -1234.5}',
         ("power_kw", f"{PORTAL}/grid/30", "production", 1.2345)),
        (f"G/{PORTAL}/grid/30/Ac/Power", b'{"value": 410}',
         ("power_kw", f"{PORTAL}/grid/30", "consumption", 0.41)),
    ],
)  # fmt: skip
def test_a_value_per_topic_in_json_is_read_rounded_and_signed(
    topic: str, payload: bytes, expected: tuple[str, str, str, float]
) -> None:
    """`value_path` reads {"value": ...}; `round` drops float32 artefacts (64.699996948 W
    kept to 0.1 W); a grid meter's negative power is production (export)."""
    reading = one(router(*FAMILIES).decode(topic, payload, NOW))
    assert isinstance(reading, Reading)
    measure, device, kind, value = expected
    assert (reading.device_id, reading.data_type) == (device, kind)
    assert getattr(reading, measure) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b'{"value": null}'),
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b""),
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b"{}"),
        ("solar/114190641177/0/power", b""),
        ("solar/114190641177/0/power", b"null"),
    ],
)
def test_no_value_is_skipped_not_a_dead_letter(topic: str, payload: bytes) -> None:
    """A null (a device gone, a phase absent) or an empty message stores nothing and is no
    dead letter: the pipeline counts it as ignored."""
    assert router(*FAMILIES).decode(topic, payload, NOW) == ()


def test_a_broad_subscription_ignores_what_no_pattern_maps_when_told_to() -> None:
    """N/{device_id*}/... subscribes to N/#: a GX device's hundreds of other paths are
    ignored under `unmatched = "ignore"`, dead letters under the default."""
    other = f"N/{PORTAL}/system/0/Serial"
    assert router(VICTRON_PV).subscriptions(None) == ["N/#"]
    assert router(VICTRON_PV).decode(other, b'{"value": "HQ2207XXXXX"}', NOW) == ()
    letter = one(router(VICTRON_PV | {"unmatched": "dead_letter"}).decode(other, b"{}", NOW))
    assert isinstance(letter, DeadLetter)
    assert letter.kind == "topic"
    # Only under its own filters: a topic elsewhere is still rejected.
    assert isinstance(one(router(VICTRON_PV).decode("X/a/b", b"1", NOW)), DeadLetter)


@pytest.mark.parametrize(("payload", "online"), [(b"1", True), (b"0", False)])
def test_numeric_status_codes_mean_online_or_offline_as_configured(
    payload: bytes, online: bool
) -> None:
    status = one(router(OPENDTU).decode("solar/114190641177/status/reachable", payload, NOW))
    assert isinstance(status, Availability)
    assert (status.device_id, status.online) == ("114190641177", online)


def test_a_status_code_nobody_configured_is_a_dead_letter_naming_the_known_ones() -> None:
    letter = one(router(OPENDTU).decode("solar/114190641177/status/reachable", b"2", NOW))
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "payload: expected one of ['0', '1']"


@pytest.mark.mqtt
async def test_three_unlike_families_configured_alone_are_ingested_end_to_end(
    broker: Mosquitto, publisher: Publisher, db_path: Path
) -> None:
    """Victron (JSON value per topic, under N/#), OpenDTU (plain numbers per topic) and a
    JSON meter (one document per message), through a real broker into SQLite: each
    reading stored, nulls and unmapped paths ignored, nothing rejected, and no row that
    carries nothing."""
    settings = make_settings(
        broker.url, db_path, "unused",
        **{"decoders.enabled": [f["name"] for f in FAMILIES], "decoders.generic": FAMILIES},
    )  # fmt: skip
    frames = [
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b'{"value": 926}'),
        (f"N/{PORTAL}/pvinverter/20/Ac/Power", b'{"value": null}'),
        (f"N/{PORTAL}/system/0/Serial", b'{"value": "HQ2207XXXXX"}'),
        (f"N/{PORTAL}/solarcharger/279/Dc/0/Voltage", b'{"value":20.43000030517578}'),
        ("solar/114190641177/0/yieldtotal", b"13.338"),
        ("solar/114190641177/0/power", b"0.6"),
        ("solar/114190641177/status/reachable", b"1"),
        ("meters/m-1/state", json.dumps({"import": {"total": 1500}, "power": 0.3}).encode()),
    ]
    async with running_daemon(settings) as daemon:
        for topic, payload in frames:
            publisher.publish(topic, payload)
        await asyncio.to_thread(publisher.wait_acknowledged)
        await wait_until(lambda: daemon.stats.received == len(frames), what="every frame")
        await wait_until(lambda: daemon.stats.stored == 4, what="4 rows")
        # The null, the unmapped path, and OpenDTU's first counter value (no energy yet,
        # nothing else with it: no row).
        assert daemon.stats.ignored == 3
        assert daemon.stats.rejected.total() == 0
    rows = query(db_path, "SELECT device_id, instantaneous_power, voltage FROM energy_data")
    assert sorted(rows, key=str) == sorted(
        [
            (f"{PORTAL}/pvinverter/20", 0.926, None),
            (f"{PORTAL}/solarcharger/279", None, 20.43),
            ("114190641177", 0.0006, None),
            ("m-1", 0.3, None),
        ],
        key=str,
    )
