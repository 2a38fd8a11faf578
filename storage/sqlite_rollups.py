"""SQLite: adding the readings a batch inserted to the rollups, through temporary tables.

The writer's connection keeps two tables outside the database file: the *delta*, the new
readings' totals per device, data type and quarter hour (storage/rollups.py), and the
same totals per hour. The 15-minute and hourly rollups take their rows as they are; the
daily and monthly rollups group the hourly ones, a quarter as many rows as the delta.

Both are keyed by their bucket and filled by upserts that add each row to its bucket's
totals, not by GROUP BY: the writer inserts a batch sorted by unique key, so its pieces
arrive in key order and each upsert appends to the table's B-tree or adds to its last
row, where a GROUP BY sorts them all first (docs/performance.md, the history import).
"""

from __future__ import annotations

import functools

from storage.rollups import (
    HOURLY,
    MEASURES,
    PRICED,
    PRICED_SUMS,
    QUARTER_HOURLY,
    ROLLED,
    Rollup,
    merge_sql,
    priced_sql,
    reading_costs,
    sqlite_pieces,
)

DELTA_TABLE = "rollup_delta"
HOURLY_DELTA_TABLE = "rollup_delta_hourly"
_DELTA_BUCKETS = {DELTA_TABLE: QUARTER_HOURLY.bucket, HOURLY_DELTA_TABLE: HOURLY.bucket}

# Made once per connection; emptied before each month's readings of a batch.
CREATE_DELTA = tuple(
    f"CREATE TEMP TABLE IF NOT EXISTS {table} (device_id, data_type, {bucket}, {MEASURES}, "
    f"{PRICED}, PRIMARY KEY (device_id, data_type, {bucket})) WITHOUT ROWID"
    for table, bucket in _DELTA_BUCKETS.items()
)
CLEAR_DELTA = tuple(f"DELETE FROM temp.{table}" for table in _DELTA_BUCKETS)


def _greatest(table: str) -> str:
    """The larger power_max of a stored row and the one added to it: SQLite's max() of two
    is NULL where either is."""
    return (
        f"coalesce(max({table}.power_max, excluded.power_max), "
        f"{table}.power_max, excluded.power_max)"
    )


def _add_to(table: str, bucket: str) -> str:
    """The upsert clause adding a row to `table`'s totals of its device, type and bucket."""
    return merge_sql(table, bucket, _greatest(table))


@functools.lru_cache(maxsize=256)
def delta_sql(partition: str) -> str:
    """Fill the delta with the readings `partition` gained past id :mark.

    The insert's new rows are exactly those: SQLite gives a new row an id above every
    existing one. NOT INDEXED keeps the planner on that id range rather than the unique
    index, which would walk the whole month. A piece counts as the delta's measures do:
    its energy, its power (max, sum and count where it has one) and its reading.
    """
    pieces = sqlite_pieces(f'"{partition}" NOT INDEXED', "WHERE id > :mark")
    return f"""{pieces}
INSERT INTO temp.{DELTA_TABLE} (device_id, data_type, quarter_hour, {MEASURES})
SELECT device_id, data_type, quarter_hour, coalesce(energy, 0), power, coalesce(power, 0),
    power IS NOT NULL, reading
FROM pieces WHERE true
{_add_to(DELTA_TABLE, QUARTER_HOURLY.bucket)}"""


# The delta's cost and carbon, and the prices that made them, where tariffs or carbon are
# configured (`priced_sql`).
PRICE_DELTA = f"""UPDATE temp.{DELTA_TABLE} AS d
SET cost = p.cost, carbon = p.carbon, price = p.price, g_per_kwh = p.g_per_kwh
FROM ({
    priced_sql(
        f"(SELECT device_id, data_type, quarter_hour, energy_kwh FROM temp.{DELTA_TABLE})",
        "device_id, data_type, quarter_hour",
    )
}) AS p
WHERE d.device_id = p.device_id AND d.data_type = p.data_type
    AND d.quarter_hour = p.quarter_hour"""


@functools.lru_cache(maxsize=256)
def reading_costs_sql(partition: str) -> str:
    """Price the readings `partition` gained past id :mark (`reading_costs`), at the prices
    PRICE_DELTA left in the delta for their quarter hours."""
    pieces = sqlite_pieces(f'"{partition}" NOT INDEXED', "WHERE id > :mark")
    return f"""{pieces}
UPDATE "{partition}" SET cost = c.cost, carbon_footprint = c.carbon FROM (
    {reading_costs("pieces", f"temp.{DELTA_TABLE}")}
) AS c
WHERE "{partition}".id = c.id"""


# The delta's totals per hour, for the hourly rollup and, grouped, the coarser ones.
FILL_HOURLY_DELTA = f"""
INSERT INTO temp.{HOURLY_DELTA_TABLE} (device_id, data_type, hour, {ROLLED})
SELECT device_id, data_type, {HOURLY.sqlite_bucket("quarter_hour")}, {ROLLED}
FROM temp.{DELTA_TABLE} WHERE true
{_add_to(HOURLY_DELTA_TABLE, HOURLY.bucket)}"""


@functools.cache
def rollup_sql(rollup: Rollup) -> str:
    """Add the delta to `rollup`: a delta's rows as they are where one has the rollup's
    buckets (WHERE true: SQLite's parser needs it before ON CONFLICT), else the hourly
    delta's totals per the rollup's bucket."""
    own = {bucket: table for table, bucket in _DELTA_BUCKETS.items()}.get(rollup.bucket)
    if own is not None:
        columns = f"device_id, data_type, {rollup.bucket}, {ROLLED}"
        source = f"SELECT {columns} FROM temp.{own} WHERE true"
    else:
        bucket = rollup.sqlite_bucket(HOURLY.bucket)
        source = (
            f"SELECT device_id, data_type, {bucket}, {PRICED_SUMS} "
            f"FROM temp.{HOURLY_DELTA_TABLE} GROUP BY 1, 2, 3"
        )
    return f"""
INSERT INTO {rollup.table} (device_id, data_type, {rollup.bucket}, {ROLLED})
{source}
{_add_to(rollup.table, rollup.bucket)}
"""
