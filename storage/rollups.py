"""The statements that keep `energy_hourly`, `energy_daily` and `energy_monthly` in step.

Rollups add only readings actually inserted, so a redelivered or duplicate reading never
counts twice. Buckets are UTC hours, days and months.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from partitions import BASE_NAME
from storage.records import READING_COLUMNS, ROW_COLUMNS


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    bucket: str
    # SQLite: the bucket's start in the text form UTCDateTime stores: the timestamp's first
    # `sqlite_prefix` characters followed by `sqlite_suffix`.
    sqlite_prefix: int
    sqlite_suffix: str

    def sqlite_bucket(self, column: str) -> str:
        # The stored text is always 'YYYY-MM-DD HH:MM:SS.ffffff' (UTCDateTime): cutting it
        # is several times cheaper than strftime, which runs for every new reading.
        return f"substr({column}, 1, {self.sqlite_prefix}) || '{self.sqlite_suffix}'"

    def postgres_bucket(self, column: str) -> str:
        return f"date_trunc('{self.bucket}', {column}, 'UTC')"


HOURLY = Rollup("energy_hourly", "hour", 13, ":00:00.000000")
DAILY = Rollup("energy_daily", "day", 10, " 00:00:00.000000")
MONTHLY = Rollup("energy_monthly", "month", 7, "-01 00:00:00.000000")
ROLLUPS = (HOURLY, DAILY, MONTHLY)

MEASURES = "energy_kwh, power_max, power_sum, power_count, readings"


def aggregates(energy: str, power: str) -> str:
    """The SQL aggregates of MEASURES over readings' energy and power columns."""
    return (
        f"coalesce(sum({energy}), 0), max({power}), coalesce(sum({power}), 0), "
        f"count({power}), count(*)"
    )


def _merge(rollup: Rollup, greatest: str) -> str:
    table = rollup.table
    return f"""ON CONFLICT (device_id, data_type, {rollup.bucket}) DO UPDATE SET
    energy_kwh = {table}.energy_kwh + excluded.energy_kwh,
    power_max = {greatest},
    power_sum = {table}.power_sum + excluded.power_sum,
    power_count = {table}.power_count + excluded.power_count,
    readings = {table}.readings + excluded.readings"""


@functools.lru_cache(maxsize=256)
def sqlite_insert_sql(partition: str, rows: int) -> str:
    """Insert `rows` readings into `partition`, skipping those already stored.

    The statement takes the batch's creation time, then each row's ROW_COLUMNS as
    parameters of one multi-row VALUES; the owner is looked up in `iot_devices`. Rows go in
    in the order given: the writer sorts them by unique key, so the index's pages are
    visited in order, and the first of two equal keys is the one kept.
    """
    row = f"({', '.join('?' * len(ROW_COLUMNS))})"
    values = ", ".join(f"column{i + 1}" for i in range(len(ROW_COLUMNS)))
    device = f"column{ROW_COLUMNS.index('device_id') + 1}"
    return f"""
INSERT INTO "{partition}" ({", ".join(READING_COLUMNS)}, validated, created_at)
SELECT (SELECT user_id FROM iot_devices AS d WHERE d.device_id = {device}), {values}, 1, ?
FROM (VALUES {", ".join([row] * rows)}) WHERE true
ON CONFLICT DO NOTHING
"""


def sqlite_rollup_sql(rollup: Rollup, partition: str) -> str:
    """Add the readings `partition` gained past id :mark to a rollup.

    The insert's new rows are exactly those: SQLite gives a new row an id above every
    existing one. NOT INDEXED keeps the planner on that id range rather than the unique
    index, which would walk the whole month.
    """
    table = rollup.table
    greatest = (
        f"coalesce(max({table}.power_max, excluded.power_max), "
        f"{table}.power_max, excluded.power_max)"
    )
    sums = aggregates("energy_amount", "instantaneous_power")
    return f"""
INSERT INTO {table} (device_id, data_type, {rollup.bucket}, {MEASURES})
SELECT device_id, data_type, {rollup.sqlite_bucket("recorded_at")}, {sums}
FROM "{partition}" NOT INDEXED WHERE id > :mark GROUP BY 1, 2, 3
{_merge(rollup, greatest)}
"""


def postgres_rollup_cte(rollup: Rollup, source: str) -> str:
    """A data-modifying CTE adding the rows of `source` (the inserted readings) to a rollup,
    in key order so that two daemons lock rollup rows in one order."""
    table = rollup.table
    greatest = f"greatest({table}.power_max, excluded.power_max)"
    return f"""rolled_{rollup.bucket} AS (
    INSERT INTO {table} (device_id, data_type, {rollup.bucket}, {MEASURES})
    SELECT device_id, data_type, {rollup.postgres_bucket("recorded_at")},
           {aggregates("energy_amount", "instantaneous_power")}
    FROM {source} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    {_merge(rollup, greatest)}
    RETURNING 1
)"""


def backfill_sql(rollup: Rollup, bucket: str, source: str = BASE_NAME, where: str = "") -> str:
    """Fill a rollup from the readings of `source` (every reading stored, by default) that
    `where` selects; `bucket` is the database's expression of the rollup's bucket of
    `recorded_at` (`Schema.rollup_bucket`)."""
    return (
        f"INSERT INTO {rollup.table} (device_id, data_type, {rollup.bucket}, {MEASURES}) "
        f"SELECT device_id, data_type, {bucket}, "
        f"{aggregates('energy_amount', 'instantaneous_power')} "
        f"FROM {source} {where} GROUP BY 1, 2, 3"
    )
