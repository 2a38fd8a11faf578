"""A home's energy flows per quarter hour, from the roles of the devices its user owned
then: what it drew from the grid and fed in, what it produced, charged and discharged.

Devices are summed by role (storage.records.Role). The grid meter's consumption and
production are import I and export E; in a quarter hour when the user owned no grid
meter the home is netted: I = max(0, L + C - P - D) and E = max(0, P + D - L - C), L
being what its consumers drew, P what its producers produced, C and D what its batteries
charged and discharged. A submeter's energy is part of the home's use, never added to it: every
total of a user's energy (self-consumption, the bill, the monthly report) is made of
these flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import EnergyBucket, energy
from storage.owners import Ownership
from storage.records import ROLE_OF, DeviceType, Role
from storage.tables import iot_devices


@dataclass(frozen=True, slots=True)
class Flows:
    """What a home drew from the grid and fed in, produced, charged and discharged."""

    imported_kwh: float
    exported_kwh: float
    produced_kwh: float
    charged_kwh: float
    discharged_kwh: float

    @property
    def used_kwh(self) -> float:
        """What the home used, H = I + P - E + D - C."""
        return (
            self.imported_kwh + self.produced_kwh - self.exported_kwh
            + self.discharged_kwh - self.charged_kwh
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class HomeQuarter(Flows):
    """One quarter hour of a home; `start` is its first instant, in the zone asked for."""

    start: datetime


@dataclass(frozen=True, slots=True)
class HomeFlows:
    quarters: list[HomeQuarter]
    # Whether a grid meter measured import and export (else they were netted), in every
    # quarter hour or in some.
    metered: bool


async def roles(conn: AsyncConnection, device_ids: Sequence[str]) -> dict[str, Role]:
    """Each device's role: registered, or its type's."""
    result = await conn.execute(
        select(iot_devices.c.device_id, iot_devices.c.device_type, iot_devices.c.role).where(
            iot_devices.c.device_id.in_(sorted(set(device_ids)))
        )
    )
    return {
        device_id: role or ROLE_OF[cast("DeviceType", device_type)]
        for device_id, device_type, role in result
    }


async def home_flows(
    conn: AsyncConnection,
    owned: Sequence[Ownership],
    zone: tzinfo,
    start: datetime,
    end: datetime,
) -> HomeFlows:
    """Every quarter hour in [start, end) of the home made of the devices in `owned`,
    while owned."""
    of = await roles(conn, [span.device_id for span in owned])
    by_role: dict[Role, list[EnergyBucket]] = {}
    for role in ("grid", "production", "consumption", "battery"):
        spans = [span for span in owned if of.get(span.device_id) == role]
        if spans:
            by_role[role] = await energy(
                conn, owned=spans, every="15min", zone=zone, start=start, end=end
            )
    if not by_role:
        by_role["consumption"] = await energy(
            conn, owned=[], every="15min", zone=zone, start=start, end=end
        )
    grid_spans = [span for span in owned if of.get(span.device_id) == "grid"]
    columns = list(by_role.values())
    empty = [EnergyBucket(b.start, 0.0, 0.0, None, 0) for b in columns[0]]
    grid, producers, consumers, battery = (
        by_role.get(role, empty) for role in ("grid", "production", "consumption", "battery")
    )
    quarters = []
    for g, p, c, b in zip(grid, producers, consumers, battery, strict=True):
        if any(span.since <= g.start < span.until for span in grid_spans):
            imported, exported = g.consumption_kwh, g.production_kwh
        else:
            net = c.consumption_kwh + b.consumption_kwh - p.production_kwh - b.production_kwh
            imported, exported = max(0.0, net), max(0.0, -net)
        quarter = HomeQuarter(
            imported, exported, p.production_kwh, b.consumption_kwh, b.production_kwh, g.start
        )
        quarters.append(quarter)
    return HomeFlows(quarters, metered=bool(grid_spans))
