"""The statements that keep the rollups (`energy_15min`, `energy_hourly`, `energy_daily`,
`energy_monthly`) in step with the readings.

Rollups add only readings actually inserted, so a redelivered or duplicate reading never
counts twice. Buckets are UTC quarter hours, hours, days and months.

A reading's energy covers an interval, from `interval_start` (the counter's previous
value, or the device's stated interval) to `recorded_at`. Energy whose interval crosses
quarter hours is spread over them in proportion to time, so a meter back after three days
offline puts three days of energy on those days, not on the hour it came back. Its power
and the reading itself count in the quarter hour it was recorded in. Every statement goes
through the same two steps: the readings' *pieces* (a reading's share of energy in each
quarter hour it covers), then their *delta*, the pieces' totals per device and quarter
hour, from which each rollup takes its buckets. Spread energy may fall into an earlier
month than its reading: the reading's own month is the one stored, the energy goes where
it was used (storage/verify.py checks both).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import TextClause, bindparam, text

from storage.records import ROW_COLUMNS
from storage.types import UTCDateTime

# A window holding every bucket.
ALL_TIME = (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    bucket: str
    # Each database's expression of a stored time's bucket, `{t}` standing for the time.
    # SQLite's stored text is always 'YYYY-MM-DD HH:MM:SS.ffffff' (UTCDateTime): cutting
    # it is several times cheaper than strftime.
    sqlite: str
    postgres: str

    def sqlite_bucket(self, column: str) -> str:
        return self.sqlite.format(t=column)

    def postgres_bucket(self, column: str) -> str:
        return self.postgres.format(t=column)


# The minute's quarter picks its start's text out of one constant: cheaper than a CASE of
# comparisons, and never ':00' after a quote, which SQLAlchemy's text() takes for a parameter.
_QUARTER_STARTS = "'00:00.00000015:00.00000030:00.00000045:00.000000'"
QUARTER_HOURLY = Rollup(
    "energy_15min",
    "quarter_hour",
    f"substr({{t}}, 1, 14) || substr({_QUARTER_STARTS}, substr({{t}}, 15, 2) / 15 * 12 + 1, 12)",
    "date_bin('15 minutes', {t}, timestamptz '2000-01-01 00:00:00+00')",
)
HOURLY = Rollup(
    "energy_hourly",
    "hour",
    "substr({t}, 1, 13) || ':00:00.000000'",
    "date_trunc('hour', {t}, 'UTC')",
)
DAILY = Rollup(
    "energy_daily",
    "day",
    "substr({t}, 1, 10) || ' 00:00:00.000000'",
    "date_trunc('day', {t}, 'UTC')",
)
MONTHLY = Rollup(
    "energy_monthly",
    "month",
    "substr({t}, 1, 7) || '-01 00:00:00.000000'",
    "date_trunc('month', {t}, 'UTC')",
)
ROLLUPS = (QUARTER_HOURLY, HOURLY, DAILY, MONTHLY)

MEASURES = "energy_kwh, power_max, power_sum, power_count, readings"
# What the rollups hold: the measures, and the energy's cost and carbon (storage/prices.py).
ROLLED = f"{MEASURES}, cost, carbon"
# What `priced_sql` adds to a row: its cost and carbon, and the prices that made them.
PRICED = "cost, carbon, price, g_per_kwh"
# What the pieces of a reading need of it; its id tells its pieces apart from others'.
PIECE_COLUMNS = (
    "id, device_id, data_type, recorded_at, interval_start, energy_amount, instantaneous_power"
)
# The delta's measures, added up over coarser buckets.
_SUMS = "sum(energy_kwh), max(power_max), sum(power_sum), sum(power_count), sum(readings)"
PRICED_SUMS = f"{_SUMS}, sum(cost), sum(carbon)"
# The pieces' measures per quarter hour.
_PIECE_SUMS = (
    "coalesce(sum(energy), 0), max(power), coalesce(sum(power), 0), count(power), sum(reading)"
)


def _spans(quarter: str) -> str:
    """Whether a reading's energy reaches back before the quarter hour it was recorded in."""
    # The cheap tests first: most readings have no interval_start, and SQLite stops there.
    return f"interval_start IS NOT NULL AND energy_amount > 0 AND interval_start < {quarter}"


def _sqlite_clock(time: str, name: str) -> str:
    """A stored time's seconds since 1970 in three columns: to its hour (`{name}_h`), its
    minutes' (`{name}_m`) and its seconds' text (`{name}_s`), added in that order to the
    microsecond; and its quarter hour's minutes in seconds (`{name}_q`), added to the first
    for its quarter hour's own seconds. julianday() alone is a float of days, good to about
    50 µs: a quarter hour's share would be off in its eighth digit."""
    return (
        f"(julianday(substr({time}, 1, 10)) - 2440587.5) * 86400 + substr({time}, 12, 2) * 3600"
        f" AS {name}_h, substr({time}, 15, 2) * 60 AS {name}_m, substr({time}, 18) AS {name}_s,"
        f" substr({time}, 15, 2) / 15 * 900 AS {name}_q"
    )


def sqlite_delta(source: str, where: str = "") -> str:
    """SQLite: a WITH clause whose `delta` holds the totals per device, data type and
    quarter hour of the readings of `source` that `where` selects, and whose `pieces`
    are each reading's (by its id) share of each quarter hour (`sqlite_pieces`)."""
    return f"""{sqlite_pieces(source, where)},
delta (device_id, data_type, quarter_hour, {MEASURES}) AS (
    SELECT device_id, data_type, quarter_hour, {_PIECE_SUMS} FROM pieces GROUP BY 1, 2, 3
)"""


def sqlite_pieces(source: str, where: str = "") -> str:
    """SQLite: a WITH clause whose `pieces` are each reading's (by its id) share of each
    quarter hour it covers, of the readings of `source` that `where` selects: its energy
    there, and its power and 1 reading in its own quarter hour.

    A reading whose energy reaches back before its own quarter hour has its times read
    once (`reaching`: a date's julianday() is the dear part), and from those its start and
    end in seconds and the seconds of its first and own quarter hours (`spreading`, sums
    of whole numbers, exact in a double: the very numbers their texts give). Those two
    quarter hours are shares of their own; only the quarter hours between (`later`) come
    from a recursive CTE, which steps in seconds and makes each one's text once. Every
    share divides by the same whole, so the shares add up to the reading's energy.
    """
    own = QUARTER_HOURLY.sqlite_bucket("recorded_at")
    spans = _spans(own)
    return f"""WITH RECURSIVE readings AS NOT MATERIALIZED (
    SELECT {PIECE_COLUMNS} FROM {source} {where}
), reaching AS MATERIALIZED (
    SELECT id, device_id, data_type, energy_amount AS energy, instantaneous_power AS power,
           {own} AS own, {QUARTER_HOURLY.sqlite_bucket("interval_start")} AS first,
           {_sqlite_clock("interval_start", "s")}, {_sqlite_clock("recorded_at", "e")}
    FROM readings WHERE {spans}
), spreading AS NOT MATERIALIZED (
    SELECT id, device_id, data_type, energy, power, own, first,
           s_h + s_m + s_s AS s, e_h + e_m + e_s AS e, s_h + s_q AS first_s, e_h + e_q AS own_s
    FROM reaching
), later (device_id, data_type, q, own_s, s, e, energy, id) AS (
    SELECT device_id, data_type, first_s + 900, own_s, s, e, energy, id
    FROM spreading WHERE first_s + 900 < own_s
    UNION ALL
    SELECT device_id, data_type, q + 900, own_s, s, e, energy, id
    FROM later WHERE q + 900 < own_s
), pieces (device_id, data_type, quarter_hour, energy, power, reading, id) AS (
    SELECT device_id, data_type, first, energy * (first_s + 900 - s) / (e - s), NULL, 0, id
    FROM spreading
    UNION ALL
    SELECT device_id, data_type, strftime('%Y-%m-%d %H:%M:%S.000000', q, 'unixepoch'),
           energy * 900 / (e - s), NULL, 0, id
    FROM later
    UNION ALL
    SELECT device_id, data_type, own, energy * (e - own_s) / (e - s), power, 1, id
    FROM spreading
    UNION ALL
    SELECT device_id, data_type, {own}, energy_amount, instantaneous_power, 1, id
    FROM readings WHERE ({spans}) IS NOT TRUE
)"""


def postgres_delta_ctes(source: str, where: str = "", prefix: str = "") -> str:
    """PostgreSQL: as `sqlite_delta`, each reading's quarter hours from generate_series;
    the CTEs alone, to follow others in a WITH clause, their names after `prefix`."""
    own = QUARTER_HOURLY.postgres_bucket("r.recorded_at")
    spans = (
        _spans(own)
        .replace("interval_start", "r.interval_start")
        .replace("energy_amount", "r.energy_amount")
    )
    share = (
        f"CASE WHEN {spans} THEN r.energy_amount * extract(epoch FROM "
        "least(r.recorded_at, q.quarter_hour + interval '15 minutes') "
        "- greatest(r.interval_start, q.quarter_hour)) "
        "/ extract(epoch FROM r.recorded_at - r.interval_start) ELSE r.energy_amount END"
    )
    first = QUARTER_HOURLY.postgres_bucket("r.interval_start")
    return f"""{prefix}readings AS (
    SELECT {PIECE_COLUMNS} FROM {source} {where}
), {prefix}pieces (device_id, data_type, quarter_hour, energy, power, reading, id) AS (
    SELECT r.device_id, r.data_type, q.quarter_hour, {share},
           CASE WHEN q.quarter_hour = {own} THEN r.instantaneous_power END,
           (q.quarter_hour = {own})::int, r.id
    FROM {prefix}readings AS r CROSS JOIN LATERAL generate_series(
        CASE WHEN {spans} THEN {first} ELSE {own} END, {own}, interval '15 minutes'
    ) AS q (quarter_hour)
), {prefix}delta (device_id, data_type, quarter_hour, {MEASURES}) AS (
    SELECT device_id, data_type, quarter_hour, {_PIECE_SUMS} FROM {prefix}pieces
    GROUP BY 1, 2, 3
)"""


def totals_sql(rollup: Rollup, bucket: str) -> str:
    """The SELECT of `rollup`'s rows from `delta`; `bucket` is the database's expression
    of the rollup's bucket of `quarter_hour`."""
    return (
        f"SELECT device_id, data_type, {bucket} AS bucket, {_SUMS} FROM delta "
        "WHERE quarter_hour >= :start AND quarter_hour < :end GROUP BY 1, 2, 3"
    )


def in_window(sql: str, start: datetime, end: datetime) -> TextClause:
    """`sql` with the buckets' window [:start, :end) bound."""
    return text(sql).bindparams(
        bindparam("start", start, type_=UTCDateTime()),
        bindparam("end", end, type_=UTCDateTime()),
    )


def merge_sql(table: str, bucket: str, greatest: str) -> str:
    """The ON CONFLICT clause adding a row's totals to those `table` holds for its device,
    data type and `bucket`; `greatest` is the database's larger of the two power_max."""
    return f"""ON CONFLICT (device_id, data_type, {bucket}) DO UPDATE SET
    energy_kwh = {table}.energy_kwh + excluded.energy_kwh,
    power_max = {greatest},
    cost = coalesce({table}.cost + excluded.cost, {table}.cost, excluded.cost),
    carbon = coalesce({table}.carbon + excluded.carbon, {table}.carbon, excluded.carbon),
    power_sum = {table}.power_sum + excluded.power_sum,
    power_count = {table}.power_count + excluded.power_count,
    readings = {table}.readings + excluded.readings"""


@functools.lru_cache(maxsize=256)
def sqlite_insert_sql(partition: str, rows: int, columns: tuple[str, ...] = ROW_COLUMNS) -> str:
    """Insert `rows` readings into `partition`, skipping those already stored.

    The statement takes the batch's creation time, then each row's values of `columns` (of
    ROW_COLUMNS, in their order; those left out stay NULL) as parameters of one multi-row
    VALUES; the owner is looked up in `iot_devices`. Rows go in in the order given: the
    writer sorts them by unique key, so the index's pages are visited in order, and the
    first of two equal keys is the one kept.
    """
    row = f"({', '.join('?' * len(columns))})"
    values = ", ".join(f"column{i + 1}" for i in range(len(columns)))
    device = f"column{columns.index('device_id') + 1}"
    recorded_at = f"column{columns.index('recorded_at') + 1}"
    return f"""
INSERT INTO "{partition}" (user_id, {", ".join(columns)}, validated, created_at)
SELECT {owner_at(device, recorded_at)}, {values}, 1, ?
FROM (VALUES {", ".join([row] * rows)}) WHERE true
ON CONFLICT DO NOTHING
"""


def owner_at(device: str, recorded_at: str) -> str:
    """The SQL of a reading's owner: who owned its device when it was recorded
    (storage/owners.py); one probe of `device_owners`' primary key."""
    return (
        f"(SELECT o.user_id FROM device_owners AS o WHERE o.device_id = {device} "
        f"AND o.since <= {recorded_at} ORDER BY o.since DESC LIMIT 1)"
    )


def reading_costs(pieces: str, priced: str) -> str:
    """Each reading's (by id) cost and carbon: the sum of its `pieces` (as a delta's) at
    the prices of their quarter hours in `priced` (a delta's rows with PRICED), so a
    device's readings add up to its 15-minute rollup's cost and carbon."""
    return f"""SELECT p.id, sum(p.energy * d.price) AS cost,
    sum(p.energy * d.g_per_kwh) / 1000.0 AS carbon
FROM {pieces} AS p JOIN {priced} AS d ON d.device_id = p.device_id
    AND d.data_type = p.data_type AND d.quarter_hour = p.quarter_hour
GROUP BY p.id"""


# The readings with energy in a window [:start, :end) of quarter hours.
READINGS_IN_WINDOW = "WHERE recorded_at >= :start AND coalesce(interval_start, recorded_at) < :end"


def reading_prices(pieces: str) -> str:
    """Each reading's (by id) cost and carbon at the rates stored now: its `pieces` (as a
    delta's) priced by `priced_sql`."""
    source = f"(SELECT device_id, data_type, quarter_hour, energy AS energy_kwh, id FROM {pieces})"
    return f"""SELECT id, sum(cost) AS cost, sum(carbon) AS carbon
FROM ({priced_sql(source, "id")}) AS p GROUP BY id"""


def postgres_rollup_ctes() -> str:
    """Data-modifying CTEs adding `priced` (`postgres_delta_ctes`, then `priced_delta`) to
    every rollup, each in key order so that two daemons lock rollup rows in one order."""
    ctes = []
    for rollup in ROLLUPS:
        table = rollup.table
        greatest = f"greatest({table}.power_max, excluded.power_max)"
        ctes.append(f"""rolled_{rollup.bucket} AS (
    INSERT INTO {table} (device_id, data_type, {rollup.bucket}, {ROLLED})
    SELECT device_id, data_type, {rollup.postgres_bucket("quarter_hour")}, {PRICED_SUMS}
    FROM priced GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    {merge_sql(table, rollup.bucket, greatest)}
    RETURNING 1
)""")
    return ",\n".join(ctes)


def backfill_sql(rollup: Rollup, delta: str, bucket: str) -> str:
    """Fill a rollup's buckets in [:start, :end) from `delta`, a WITH clause ending in the
    delta (`Schema.rollup_delta`); `bucket` is the database's expression of the rollup's
    bucket of `quarter_hour` (`Schema.rollup_bucket`)."""
    columns = f"device_id, data_type, {rollup.bucket}, {MEASURES}"
    return f"{delta}\nINSERT INTO {rollup.table} ({columns}) {totals_sql(rollup, bucket)}"


_NONE = "CAST(NULL AS DOUBLE PRECISION)"


def priced_delta(priced: bool) -> str:  # noqa: FBT001
    """A CTE `priced`: the `delta` with each quarter hour's cost and carbon, and its prices
    (`priced_sql`); NULL for all unless `priced`, so a database without tariffs or carbon
    pays no lookups."""
    if not priced:
        nothing = ", ".join(f"{_NONE} AS {name}" for name in PRICED.split(", "))
        return f"priced AS (SELECT delta.*, {nothing} FROM delta)"
    return f"priced AS ({priced_sql('delta', f'device_id, data_type, quarter_hour, {MEASURES}')})"


def priced_sql(source: str, columns: str) -> str:
    """The rows of `source` (a table or a parenthesised query with device_id, data_type,
    quarter_hour and energy_kwh): their `columns`, then (PRICED) `cost` and `carbon`, and
    the `price` (per kWh, negative for energy fed in) and `g_per_kwh` that gave them, at
    the rate in `rates` of the device's owner in that quarter hour (storage/prices.py).

    Whose rates: the device's where a tariff of its own holds then, else its owner's if they
    have rates of their own, else everyone's (''); which of them: the subject's latest not
    after the quarter hour. Carbon is always the owner's. Energy drawn costs the import
    price, energy fed in is credited the feed-in price; carbon (kg) is of energy consumed,
    energy produced having none of the grid's.
    """
    owner = owner_at("e.device_id", "e.quarter_hour")
    own = f"SELECT s.subject FROM rates AS s WHERE s.subject = 'user:' || {owner} LIMIT 1"
    device = "SELECT s.subject FROM rates AS s WHERE s.subject = 'device:' || e.device_id LIMIT 1"
    kept = ", ".join(f"u.{name}" for name in columns.split(", "))

    def latest(alias: str, subject: str) -> str:
        return (
            f"{alias}.subject = q.{subject} AND {alias}.since = (SELECT max(x.since) FROM "
            f"rates AS x WHERE x.subject = q.{subject} AND x.since <= q.quarter_hour)"
        )

    def of_tariff(column: str) -> str:
        """The device's price where a tariff of its own holds, else its owner's."""
        return f"CASE WHEN d.tariff IS NULL THEN r.{column} ELSE d.{column} END"

    return f"""SELECT {kept}, u.energy_kwh * u.price AS cost,
    u.energy_kwh * u.g_per_kwh / 1000.0 AS carbon, u.price, u.g_per_kwh
FROM (
    SELECT q.*,
        CASE q.data_type WHEN 'consumption' THEN {of_tariff("import_price")}
            ELSE -{of_tariff("export_price")} END AS price,
        CASE q.data_type WHEN 'consumption' THEN r.carbon_g_per_kwh END AS g_per_kwh
    FROM (
        SELECT e.*, coalesce(({own}), '') AS subject, ({device}) AS device_subject
        FROM {source} AS e
    ) AS q
    LEFT JOIN rates AS r ON {latest("r", "subject")}
    LEFT JOIN rates AS d ON {latest("d", "device_subject")}
) AS u"""
