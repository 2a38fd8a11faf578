"""Self-consumption: how much of what a home produced it used itself, and how much of what
it used it produced, from the roles of the devices a user owned then.

Per quarter hour, with the user's devices summed by role (storage.records.Role):
- imported I and exported E are the grid meter's consumption and production; a home
  without one is netted quarter hour by quarter hour: I = max(0, L + C - P - D) and
  E = max(0, P + D - L - C), L being what consumers drew;
- produced P is the producers' production; a battery charged C and discharged D.

Over a period, the home used H = I + P - E + D - C, and
- self-consumed energy S = P - E (production that was not fed in),
- self-consumption ratio S / P,
- self-sufficiency (H - I) / H = 1 - I / H (the share of use not drawn from the grid),
the formulas of the Home Assistant energy dashboard, where a battery's energy is the
home's in both directions.
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
class SelfConsumption:
    imported_kwh: float
    exported_kwh: float
    produced_kwh: float
    charged_kwh: float
    discharged_kwh: float
    # Whether a grid meter measured import and export (else they were netted).
    metered: bool

    @property
    def used_kwh(self) -> float:
        """What the home used, H."""
        return (
            self.imported_kwh + self.produced_kwh - self.exported_kwh
            + self.discharged_kwh - self.charged_kwh
        )  # fmt: skip

    @property
    def self_consumed_kwh(self) -> float:
        return max(0.0, self.produced_kwh - self.exported_kwh)

    @property
    def self_consumption_ratio(self) -> float | None:
        return self.self_consumed_kwh / self.produced_kwh if self.produced_kwh > 0 else None

    @property
    def self_sufficiency_ratio(self) -> float | None:
        used = self.used_kwh
        return (used - self.imported_kwh) / used if used > 0 else None


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


async def self_consumption(
    conn: AsyncConnection,
    owned: Sequence[Ownership],
    zone: tzinfo,
    start: datetime,
    end: datetime,
) -> SelfConsumption:
    """The user's balance over [start, end) from the devices in `owned`, while owned."""
    of = await roles(conn, [span.device_id for span in owned])
    by_role: dict[Role, list[EnergyBucket]] = {}
    for role in ("grid", "production", "consumption", "battery"):
        spans = [span for span in owned if of.get(span.device_id) == role]
        if spans:
            by_role[role] = await energy(
                conn, owned=spans, every="15min", zone=zone, start=start, end=end
            )
    quarters = len(next(iter(by_role.values()), []))
    empty = EnergyBucket(start, 0.0, 0.0, None, 0)

    def at(role: Role, index: int) -> EnergyBucket:
        buckets = by_role.get(role)
        return buckets[index] if buckets else empty

    imported = exported = produced = charged = discharged = 0.0
    for index in range(quarters):
        grid, producers = at("grid", index), at("production", index)
        consumers, battery = at("consumption", index), at("battery", index)
        produced += producers.production_kwh
        charged += battery.consumption_kwh
        discharged += battery.production_kwh
        if "grid" in by_role:
            imported += grid.consumption_kwh
            exported += grid.production_kwh
            continue
        net = (consumers.consumption_kwh + battery.consumption_kwh
               - producers.production_kwh - battery.production_kwh)  # fmt: skip
        imported += max(0.0, net)
        exported += max(0.0, -net)
    return SelfConsumption(
        imported, exported, produced, charged, discharged, metered="grid" in by_role
    )
