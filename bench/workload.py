"""The benchmark's fixed workload: numbered canonical readings from a simulated fleet."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ingest.decode.topics import TopicScheme
from meterflow.simulate import fleet, reading

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def workload(
    prefix: str, readings: int, devices: int, seed: int = 7
) -> Iterator[tuple[str, bytes]]:
    """`readings` messages round-robin over `devices`; each carries its number as `seq`."""
    rng = random.Random(seed)
    scheme = TopicScheme(prefix)
    simulated = fleet(devices, rng)
    for seq in range(readings):
        device = simulated[seq % devices]
        at = BASE + timedelta(seconds=seq // devices)
        document = reading(device, at, 60.0, rng) | {"seq": seq}
        yield scheme.telemetry(device.device_type, device.device_id), json.dumps(document).encode()
