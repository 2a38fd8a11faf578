"""Answers for analysts about a user: the devices they own, their energy balance, and the
`user_energy_summary` view. Totals come from the rollups (storage/energy.py), never raw
readings, over local days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.energy import energy, local_span
from storage.errors import QueryError
from storage.tables import iot_devices

SUMMARY_VIEW = "user_energy_summary"


async def owned_devices(conn: AsyncConnection, user_id: str) -> list[str]:
    """The devices the registry gives `user_id`; QueryError if none."""
    devices = list(
        await conn.scalars(
            select(iot_devices.c.device_id)
            .where(iot_devices.c.user_id == user_id)
            .order_by(iot_devices.c.device_id)
        )
    )
    if not devices:
        raise QueryError(
            f"no device belongs to user {user_id!r}: `meterflow devices list` shows the owners"
        )
    return devices


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: str
    first_day: date
    consumption_kwh: float
    production_kwh: float
    devices: int

    @property
    def net_kwh(self) -> float:
        """Consumption minus production: positive drew from the grid, negative fed it."""
        return self.consumption_kwh - self.production_kwh


async def balance(
    conn: AsyncConnection, user_id: str, first_day: date, last_day: date, zone: tzinfo
) -> Balance:
    """A user's consumption, production and net over their devices, over local days."""
    devices = await owned_devices(conn, user_id)
    start, end = local_span(first_day, last_day, zone)
    months = await energy(conn, device_ids=devices, every="month", zone=zone, start=start, end=end)
    return Balance(
        user_id,
        first_day,
        sum(m.consumption_kwh for m in months),
        sum(m.production_kwh for m in months),
        len(devices),
    )


def summary_view_ddl(day: str) -> str:
    """`user_energy_summary`: per user and UTC day, consumption, production and net kWh;
    `day` is the database's expression of the UTC date of `h.day` (`Schema.utc_date`)."""
    consumption = "sum(CASE WHEN h.data_type = 'consumption' THEN h.energy_kwh ELSE 0 END)"
    production = "sum(CASE WHEN h.data_type = 'production' THEN h.energy_kwh ELSE 0 END)"
    return (
        f"CREATE VIEW {SUMMARY_VIEW} AS SELECT d.user_id, {day} AS day, "
        f"{consumption} AS consumption_kwh, {production} AS production_kwh, "
        f"{consumption} - {production} AS net_kwh "
        "FROM energy_daily h JOIN iot_devices d ON d.device_id = h.device_id "
        f"WHERE d.user_id IS NOT NULL GROUP BY d.user_id, {day}"
    )
