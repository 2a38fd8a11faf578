"""Answers for analysts from the daily rollup: a device's days, a user's energy balance.

Both read `energy_daily`, never raw readings, so a month or a year costs a row per device
and day, not millions of readings. Days are UTC days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import energy_daily, iot_devices

SUMMARY_VIEW = "user_energy_summary"


@dataclass(frozen=True, slots=True)
class DeviceDay:
    day: date
    energy_kwh: float
    average_power_kw: float | None
    peak_power_kw: float | None
    readings: int


async def device_days(
    conn: AsyncConnection, device_id: str, start: datetime, end: datetime
) -> list[DeviceDay]:
    """Per UTC day starting in [start, end): energy, average and peak power, readings."""
    daily = energy_daily.c
    result = await conn.execute(
        select(
            daily.day,
            func.sum(daily.energy_kwh),
            func.sum(daily.power_sum) / func.nullif(func.sum(daily.power_count), 0),
            func.max(daily.power_max),
            func.sum(daily.readings),
        )
        .where(daily.device_id == device_id, daily.day >= start, daily.day < end)
        .group_by(daily.day)
        .order_by(daily.day)
    )
    return [
        DeviceDay(d.date(), float(e), None if a is None else float(a), p, int(n))
        for d, e, a, p, n in result
    ]


@dataclass(frozen=True, slots=True)
class Balance:
    user_id: str
    since: datetime
    consumption_kwh: float
    production_kwh: float
    devices: int

    @property
    def net_kwh(self) -> float:
        """Consumption minus production: positive drew from the grid, negative fed it."""
        return self.consumption_kwh - self.production_kwh


async def balance(conn: AsyncConnection, user_id: str, since: datetime) -> Balance:
    """A user's consumption, production and net over their devices, from the UTC day of
    `since` on."""
    h, d = energy_daily.c, iot_devices.c
    first_day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    result = await conn.execute(
        select(
            func.coalesce(func.sum(case((h.data_type == "consumption", h.energy_kwh), else_=0)), 0),
            func.coalesce(func.sum(case((h.data_type == "production", h.energy_kwh), else_=0)), 0),
        )
        .select_from(energy_daily.join(iot_devices, d.device_id == h.device_id))
        .where(d.user_id == user_id, h.day >= first_day)
    )
    consumption, production = result.one()
    devices = await conn.scalar(select(func.count()).where(d.user_id == user_id))
    return Balance(user_id, since, float(consumption), float(production), int(devices or 0))


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
