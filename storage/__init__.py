"""Storage: engines, tables, the single batch writer and the device registry."""

from storage import registry
from storage.backend import Backend, Dialect, Operations, Schema, backend_for, backend_for_url
from storage.engine import SQLiteOptions, Synchronous, database_url, open_engine
from storage.errors import (
    DatabaseInUseError,
    EncryptionKeyError,
    QueryError,
    SchemaVersionError,
    StorageError,
    UnsupportedDatabaseError,
    WriteError,
)
from storage.migrations import SCHEMA_VERSION, schema_version, upgrade
from storage.records import (
    DATA_TYPE_OF,
    Availability,
    DataType,
    DeadLetter,
    DeviceType,
    Reading,
    RejectKind,
    UnknownDevices,
    WriteBatch,
    WriteResult,
)
from storage.retry import Backoff
from storage.tables import dead_letters, energy_parent, energy_partition, iot_devices, metadata
from storage.writer import BatchWriter

__all__ = [
    "DATA_TYPE_OF",
    "SCHEMA_VERSION",
    "Availability",
    "Backend",
    "Backoff",
    "BatchWriter",
    "DataType",
    "DatabaseInUseError",
    "DeadLetter",
    "DeviceType",
    "Dialect",
    "EncryptionKeyError",
    "Operations",
    "QueryError",
    "Reading",
    "RejectKind",
    "SQLiteOptions",
    "Schema",
    "SchemaVersionError",
    "StorageError",
    "Synchronous",
    "UnknownDevices",
    "UnsupportedDatabaseError",
    "WriteBatch",
    "WriteError",
    "WriteResult",
    "backend_for",
    "backend_for_url",
    "database_url",
    "dead_letters",
    "energy_parent",
    "energy_partition",
    "iot_devices",
    "metadata",
    "open_engine",
    "registry",
    "schema_version",
    "upgrade",
]
