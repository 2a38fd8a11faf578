"""The statements that keep `energy_hourly`, `energy_daily` and `energy_monthly` in step.

Rollups add only readings actually inserted, so a redelivered or duplicate reading never
counts twice. Buckets are UTC hours, days and months.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitions import BASE_NAME
from storage.records import READING_COLUMNS


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

# SQLite: the batch's readings not yet stored, unpacked from JSON once, then summed into
# every rollup and inserted into the partition. Untyped columns keep the values' own types.
SQLITE_NEW = "meterflow_new_readings"
SQLITE_NEW_DDL = f"CREATE TEMP TABLE IF NOT EXISTS {SQLITE_NEW} ({', '.join(READING_COLUMNS)})"

# The columns of a reading in SQLite's JSON batch rows: all but the owner, which the
# insert looks up itself.
SQLITE_ROW_COLUMNS = tuple(name for name in READING_COLUMNS if name != "user_id")

_MEASURES = "energy_kwh, power_max, power_sum, power_count, readings"


def _aggregates(energy: str, power: str) -> str:
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


def sqlite_new_readings_sql(partition: str) -> str:
    """Put a JSON batch's readings that are not yet in `partition` into SQLITE_NEW.

    The JSON rows hold READING_COLUMNS but the owner, which is looked up in `iot_devices`
    for the new rows only, within the statement. "New" is "not yet stored": the NOT EXISTS
    probe uses the unique key's index. Within the batch the first of two equal keys counts
    (SQLite takes bare columns from the row with min(key)), as an INSERT ... ON CONFLICT DO
    NOTHING of the whole batch would.
    """
    sent = SQLITE_ROW_COLUMNS
    unpacked = ", ".join(f"value ->> {i} AS {name}" for i, name in enumerate(sent))
    return f"""
INSERT INTO {SQLITE_NEW} ({", ".join(READING_COLUMNS)})
SELECT (SELECT user_id FROM iot_devices AS d WHERE d.device_id = batch.device_id),
       {", ".join(sent)}
FROM (
    SELECT {unpacked}, min(key)
    FROM json_each(:rows) GROUP BY device_id, data_type, recorded_at
) AS batch
WHERE NOT EXISTS (
    SELECT 1 FROM "{partition}" AS stored
    WHERE stored.device_id = batch.device_id AND stored.data_type = batch.data_type
      AND stored.recorded_at = batch.recorded_at
)
"""


def sqlite_rollup_sql(rollup: Rollup) -> str:
    """Add SQLITE_NEW's rows to a rollup."""
    table = rollup.table
    greatest = (
        f"coalesce(max({table}.power_max, excluded.power_max), "
        f"{table}.power_max, excluded.power_max)"
    )
    aggregates = _aggregates("energy_amount", "instantaneous_power")
    return f"""
INSERT INTO {table} (device_id, data_type, {rollup.bucket}, {_MEASURES})
SELECT device_id, data_type, {rollup.sqlite_bucket("recorded_at")}, {aggregates}
FROM {SQLITE_NEW} WHERE true GROUP BY 1, 2, 3
{_merge(rollup, greatest)}
"""


def sqlite_insert_new_sql(partition: str) -> str:
    """Move SQLITE_NEW's rows into the partition (the conflict clause only as a safeguard)."""
    columns = ", ".join(READING_COLUMNS)
    return (
        f'INSERT INTO "{partition}" ({columns}, validated, created_at) '
        f"SELECT {columns}, 1, :created_at FROM {SQLITE_NEW} WHERE true ON CONFLICT DO NOTHING"
    )


def postgres_rollup_cte(rollup: Rollup, source: str) -> str:
    """A data-modifying CTE adding the rows of `source` (the inserted readings) to a rollup,
    in key order so that two daemons lock rollup rows in one order."""
    table = rollup.table
    greatest = f"greatest({table}.power_max, excluded.power_max)"
    return f"""rolled_{rollup.bucket} AS (
    INSERT INTO {table} (device_id, data_type, {rollup.bucket}, {_MEASURES})
    SELECT device_id, data_type, {rollup.postgres_bucket("recorded_at")},
           {_aggregates("energy_amount", "instantaneous_power")}
    FROM {source} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    {_merge(rollup, greatest)}
    RETURNING 1
)"""


def backfill_sql(rollup: Rollup, dialect: str) -> str:
    """Fill a rollup from every reading already stored (schema upgrades)."""
    bucket = (
        rollup.postgres_bucket("recorded_at")
        if dialect == "postgresql"
        else rollup.sqlite_bucket("recorded_at")
    )
    return (
        f"INSERT INTO {rollup.table} (device_id, data_type, {rollup.bucket}, {_MEASURES}) "
        f"SELECT device_id, data_type, {bucket}, "
        f"{_aggregates('energy_amount', 'instantaneous_power')} "
        f"FROM {BASE_NAME} GROUP BY 1, 2, 3"
    )
