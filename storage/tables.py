"""The schema: device registry, dead letters and the shape of one energy partition."""

from __future__ import annotations

from typing import get_args

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import SchemaItem

from partitions import BASE_NAME
from storage.records import DeviceType
from storage.types import UTCDateTime

metadata = MetaData()

DEVICE_STATUSES = ("active", "inactive", "maintenance", "error")
DEVICE_TYPES: tuple[str, ...] = get_args(DeviceType)
# The registry's check of device types: schema v10 widened it (storage/migrations.py).
DEVICE_TYPE_CHECK = f"device_type IN {DEVICE_TYPES!r}"
DATA_TYPES = ("consumption", "production")
ROLLUP_MEASURES = (
    "energy_kwh",
    "power_max",
    "power_sum",
    "power_count",
    "readings",
    "cost",
    "carbon",
)
# PostgreSQL: free space left in each page of a rollup, for its in-place updates.
ROLLUP_FILLFACTOR = 70

iot_devices = Table(
    "iot_devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", String(128), nullable=False, unique=True),
    Column("device_type", String(32), nullable=False),
    Column("user_id", String(128)),
    Column("name", String(255)),
    Column("location", String(255)),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("last_seen", UTCDateTime),
    Column("battery_level", Float),
    # The reading time the battery level came from, so a late, older reading never
    # overwrites a newer level.
    Column("battery_updated_at", UTCDateTime),
    Column("firmware_version", String(64)),
    # The most power the device can measure, bounding the energy of any interval; unset
    # takes its type's from the settings (schema v5).
    Column("max_power_kw", Float),
    # Its place in the home's energy balance (storage.records.Role); unset, its type's
    # (schema v11).
    Column("role", String(16)),
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("updated_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    CheckConstraint(f"status IN {DEVICE_STATUSES!r}", name="ck_iot_devices_status"),
    CheckConstraint(DEVICE_TYPE_CHECK, name="ck_iot_devices_type"),
    CheckConstraint(
        "battery_level IS NULL OR (battery_level >= 0 AND battery_level <= 100)",
        name="ck_iot_devices_battery",
    ),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_dead_letters_received_at", "received_at"),
)


# Who read or changed personal data, when, with which command, about what, and how many
# rows (storage/audit.py; schema v14). The daemon's own ingest is not in it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("command", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("rows", Integer),
    Index("ix_audit_log_at", "at"),
)


# The last value of each cumulative energy counter a device reports, so that a counter
# turns into interval energy across batches and restarts without counting anything twice.
meter_counters = Table(
    "meter_counters",
    metadata,
    Column("device_id", String(128), primary_key=True),
    Column("data_type", String(16), primary_key=True),
    Column("counter", String(64), primary_key=True),
    # The last good value, and when it was read.
    Column("value_kwh", Float, nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
    # A value far below it, held until the next shows a glitch or a reset (schema v5).
    Column("low_kwh", Float),
    Column("low_at", UTCDateTime),
    # The meter was replaced at observed_at: the next value starts a new counter (v5).
    Column("replaced", Boolean),
    Column("updated_at", UTCDateTime, nullable=False),
)


# Who owned each device from when (schema v7): a row per change, `user_id` NULL for nobody.
# A reading belongs to the owner at its time, and per-user totals follow these spans
# (storage/owners.py). `iot_devices.user_id` is the owner now.
device_owners = Table(
    "device_owners",
    metadata,
    Column("device_id", String(128), primary_key=True),
    Column("since", UTCDateTime, primary_key=True),
    Column("user_id", String(128)),
)

# The `[analytics]` time zones, as the daemon or a command last read them from the settings,
# for SQL that needs local days without Python: each user's zone (user_id '' for everyone
# without one of their own), and each of those zones' UTC offset from `since` on
# (storage/zones.py).
user_zones = Table(
    "user_zones",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("zone", String(64), nullable=False),
)
zone_offsets = Table(
    "zone_offsets",
    metadata,
    Column("zone", String(64), primary_key=True),
    Column("since", UTCDateTime, primary_key=True),
    Column("offset_s", Integer, nullable=False),
)


# The configured tariffs and grid carbon as a timeline per subject ('user:<id>', or ''
# for everyone), each row in force from `since` until the subject's next (storage/tariffs.py,
# written by storage/prices.py, schema v11).
rates = Table(
    "rates",
    metadata,
    Column("subject", String(140), primary_key=True),
    Column("since", UTCDateTime, primary_key=True),
    Column("tariff", String(64)),
    Column("period", String(32)),
    Column("import_price", Float),
    Column("export_price", Float),
    Column("carbon_g_per_kwh", Float),
)


def _series(name: str, key: str, value: str) -> Table:
    """An imported time series (storage/series.py, schema v11): per key, `value` holding
    in [start, until)."""
    return Table(
        name,
        metadata,
        Column(key, String(64), primary_key=True),
        Column("start", UTCDateTime, primary_key=True),
        Column("until", UTCDateTime, nullable=False),
        Column(value, Float, nullable=False),
    )


# A dynamic tariff's import prices per kWh, and a grid zone's g CO2 per kWh.
dynamic_prices = _series("dynamic_prices", "tariff", "price")
carbon_intensity = _series("carbon_intensity", "zone", "g_per_kwh")


def _rollup(name: str, bucket: str) -> Table:
    """Totals per device and time bucket, kept in the same transaction as the readings they
    sum and counting only rows actually inserted: questions over days and months read
    these, not raw readings.

    Every batch updates about one row per device in each rollup. PostgreSQL writes an
    update in place (a HOT update) only when no indexed column changes and the page has
    room, so there the bucket index leaves energy_kwh out and pages are kept 30 % free.
    With the foreign key below gone too, that saves the statement which inserts a batch and
    adds it to the rollups a large part of its time (`python -m bench.pg_batch`,
    docs/performance.md). SQLite has no such distinction and keeps the index-only scan.
    """
    columns = (bucket, "device_id", "data_type")
    table = Table(
        name,
        metadata,
        Column("device_id", String(128), primary_key=True),
        Column("data_type", String(16), primary_key=True),
        Column(bucket, UTCDateTime, primary_key=True),
        Column("energy_kwh", Float, nullable=False),
        Column("power_max", Float),
        # Sum and count of the power values, for an exact average power over any span.
        Column("power_sum", Float, nullable=False),
        Column("power_count", Integer, nullable=False),
        Column("readings", Integer, nullable=False),
        # What the energy cost (a credit, negative, for energy fed in) and the kg CO2 of
        # energy consumed, at the rates of the owner then (storage/prices.py); NULL where
        # nothing prices it (schema v11).
        Column("cost", Float),
        Column("carbon", Float),
        # Covers "every device's totals over a span": an index-only scan of its buckets,
        # not a lookup of each row (schema v8 added the measures beside energy_kwh, v11
        # cost and carbon).
        Index(f"ix_{name}_{bucket}", *columns, *ROLLUP_MEASURES).ddl_if(dialect="sqlite"),
        Index(f"ix_{name}_{bucket}", *columns).ddl_if(dialect="postgresql"),
    )
    # SQLAlchemy's DDL is unannotated; the statement runs on PostgreSQL only, as ddl_if.
    leave_room = DDL(f"ALTER TABLE %(table)s SET (fillfactor = {ROLLUP_FILLFACTOR})")  # type: ignore[no-untyped-call]
    event.listen(table, "after_create", leave_room.execute_if(dialect="postgresql"))
    return table


energy_15min = _rollup("energy_15min", "quarter_hour")
energy_hourly = _rollup("energy_hourly", "hour")
energy_daily = _rollup("energy_daily", "day")
energy_monthly = _rollup("energy_monthly", "month")


def _reading_columns(name: str) -> list[SchemaItem]:
    """Every column and constraint of a readings table but its id."""
    return [
        Column("user_id", String(128)),
        Column("device_id", String(128), nullable=False),
        Column("data_type", String(16), nullable=False),
        # Either may be missing: devices that publish one number per topic send power and
        # energy in separate messages. SUM and MAX skip NULLs, so aggregates stay right.
        Column("energy_amount", Float),
        Column("instantaneous_power", Float),
        Column("voltage", Float),
        Column("current", Float),
        Column("battery_pct", Float),
        Column("irradiance_wm2", Float),
        Column("panel_temp_c", Float),
        Column("recorded_at", UTCDateTime, nullable=False),
        Column("quality", String(32), nullable=False, server_default="good"),
        Column("validated", Boolean, nullable=False, server_default=true()),
        Column(
            "metadata", JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
        ),
        Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
        # Where the interval the energy covers starts, when known: the energy is spread
        # over it (storage/rollups.py). Last, as schema v6 added it to existing tables.
        Column("interval_start", UTCDateTime),
        # How full a storage battery (or an EV on its charger) is, in % (schema v10);
        # a device's own battery is `battery_pct`.
        Column("state_of_charge", Float),
        # What the reading's energy cost (feed-in credited: negative) and its kg CO2, at
        # its owner's rate in each quarter hour it covers (storage/rollups.py; schema v13).
        # NULL where nothing priced it.
        Column("cost", Float),
        Column("carbon_footprint", Float),
        UniqueConstraint("device_id", "data_type", "recorded_at", name=f"uq_{name}_reading"),
        CheckConstraint(f"data_type IN {DATA_TYPES!r}", name=f"ck_{name}_data_type"),
        CheckConstraint("energy_amount >= 0", name=f"ck_{name}_energy"),
        # PostgreSQL checks a foreign key with a row-locking query per inserted row (a large
        # share of its time per reading, docs/performance.md), while the writer upserts every device
        # of a batch in the batch's own transaction before its readings: the reference
        # holds by construction. SQLite checks with one index probe and keeps it.
        ForeignKeyConstraint(
            ["device_id"], [iot_devices.c.device_id], name=f"fk_{name}_device"
        ).ddl_if(dialect="sqlite"),
    ]


def energy_partition(name: str, target: MetaData | None = None) -> Table:
    """SQLite: the table holding one month of readings (the view unions them).

    One index only: the unique key starts with the device, so it also serves every
    per-device time-range query; a second time index would slow inserts for no reader.
    """
    return Table(
        name,
        target if target is not None else MetaData(),
        Column("id", Integer, primary_key=True),
        *_reading_columns(name),
    )


def energy_parent(target: MetaData | None = None) -> Table:
    """PostgreSQL: `energy_data`, range-partitioned by month on recorded_at.

    A primary key of a partitioned table must contain the partition key, so id is an
    identity column without one; the unique key (which ends in recorded_at) identifies a
    reading, as on SQLite.
    """
    return Table(
        BASE_NAME,
        target if target is not None else MetaData(),
        Column("id", BigInteger, Identity(), nullable=False),
        *_reading_columns(BASE_NAME),
        postgresql_partition_by="RANGE (recorded_at)",
    )
