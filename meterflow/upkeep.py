"""The daemon's periodic upkeep: partitions ahead, device status, retention, the facts
metrics show.

Each job is a task on the writer's queue (storage/tasks.py), between two batches, or,
for retention, holds the writer while a month moves (`BatchWriter.paused`). Each runs on
its own schedule, and a failing round is logged and tried again at the next one: upkeep
must never take the ingest path down with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from meterflow.settings import Settings
from partitions import Month, PartitionError, PartitionStore, apply_retention, retired
from storage import BatchWriter, StorageError, registry

log = structlog.get_logger("meterflow.upkeep")

# Months turn over rarely; checking every few hours keeps the partitions ahead in place
# across a month boundary however long the daemon runs.
CREATE_AHEAD_EVERY_S = 6 * 3600
# Beyond this many devices changing status at once (a broker outage, say), one summary
# line says it instead of a line per device.
LOGGED_DEVICES_MAX = 20


@dataclass(slots=True)
class Facts:
    """What the database says, as of the last device check; the metrics endpoint shows it."""

    partitions: int = 0
    devices: dict[str, int] = field(default_factory=dict)
    low_battery: int = 0
    stray_rows: int = 0
    went_inactive: int = 0
    came_back: int = 0
    checked: bool = False


@dataclass(frozen=True, slots=True)
class _Check:
    silent: list[str]
    inactive: set[str]
    statuses_of_previous: dict[str, str]
    counts: dict[str, int]
    low_battery: int


class Upkeep:
    def __init__(self, writer: BatchWriter, store: PartitionStore, settings: Settings) -> None:
        self._writer = writer
        self._store = store
        self._settings = settings
        self.facts = Facts()
        self._inactive: set[str] | None = None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                _every(CREATE_AHEAD_EVERY_S, self.partitions_ahead), name="meterflow.ahead"
            )
            tasks.create_task(
                _every(self._settings.devices.check_interval_s, self.check_devices),
                name="meterflow.devices",
            )
            retention = self._settings.retention
            if retention.keep_months is not None:
                tasks.create_task(
                    _every(retention.interval_s, self.apply_retention), name="meterflow.retention"
                )

    async def apply_retention(self) -> None:
        """Archive or drop the months the retention policy retires, one month at a time."""
        retention = self._settings.retention
        if retention.keep_months is None:
            return
        current = Month.of(datetime.now(UTC))
        months = await self._writer.reload_partitions()
        for month in retired(months, current, retention.keep_months):
            # Batches wait while a month moves; between months they go on.
            async with self._writer.paused():
                done = await apply_retention(
                    self._store,
                    [month],
                    current,
                    keep_months=retention.keep_months,
                    action=retention.action,
                    archive_dir=retention.archive_dir,
                )
            for retired_month, outcome in done:
                log.info("retention", month=str(retired_month), outcome=outcome)

    async def partitions_ahead(self) -> None:
        """Create the coming months' partitions; warn about readings outside any month."""
        created = await self._writer.create_ahead(self._settings.storage.partitions_ahead)
        for name in created:
            log.info("partition created", partition=name, ahead=True)
        stray = await self._writer.stray_rows()
        if stray:
            log.warning(
                "readings in the default partition", rows=stray, fix="meterflow partitions repair"
            )

    async def check_devices(self) -> None:
        """Mark silent devices inactive, report status flips, refresh the facts."""
        devices = self._settings.devices
        now = datetime.now(UTC)
        cutoffs = {
            device_type: now - timedelta(seconds=interval * devices.offline_factor)
            for device_type, interval in devices.expected_interval_s.items()
        }
        previous = self._inactive

        async def check(conn: AsyncConnection) -> _Check:
            silent = await registry.mark_offline(conn, cutoffs, now)
            inactive = set(await registry.ids_with_status(conn, "inactive"))
            back = sorted((previous or set()) - inactive)
            return _Check(
                silent=silent,
                inactive=inactive,
                statuses_of_previous=await registry.statuses(conn, back),
                counts=await registry.status_counts(conn),
                low_battery=await registry.low_battery_count(conn, devices.low_battery_pct),
            )

        result = await self._writer.transaction(check)
        stray_rows = await self._writer.stray_rows()
        months = await self._writer.reload_partitions()
        self._inactive = result.inactive
        went = set(result.silent)
        if previous is not None:
            # Devices an availability message or an operator made inactive since last time.
            went |= result.inactive - previous
        came_back = sorted(d for d, s in result.statuses_of_previous.items() if s == "active")
        _log_flips("device inactive", sorted(went), cause_of=set(result.silent))
        _log_flips("device active again", came_back)
        facts = self.facts
        facts.went_inactive += len(went)
        facts.came_back += len(came_back)
        facts.devices = result.counts
        facts.low_battery = result.low_battery
        facts.stray_rows = stray_rows
        facts.partitions = len(months)
        facts.checked = True


def _log_flips(event: str, device_ids: list[str], cause_of: set[str] | None = None) -> None:
    for device_id in device_ids[:LOGGED_DEVICES_MAX]:
        if cause_of is None:
            log.info(event, device_id=device_id)
        else:
            cause = "silent" if device_id in cause_of else "offline message or operator"
            log.info(event, device_id=device_id, cause=cause)
    if len(device_ids) > LOGGED_DEVICES_MAX:
        log.info(event, devices=len(device_ids), listed=LOGGED_DEVICES_MAX)


async def _every(interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except (StorageError, PartitionError) as exc:
            log.error(  # noqa: TRY400  (the reason is the message; a traceback adds nothing)
                "upkeep failed, trying again later", job=job.__name__, error=str(exc)
            )
        except Exception:
            log.exception("upkeep failed, trying again later", job=job.__name__)
        await asyncio.sleep(interval_s)
