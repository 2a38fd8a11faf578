"""Storage: engines, tables, the single batch writer and the device registry."""

from storage.backend import Backend, backend_for
from storage.engine import SQLiteOptions, Synchronous, database_url, open_engine
from storage.errors import StorageError, UnsupportedDatabaseError, WriteError
from storage.records import (
    DATA_TYPE_OF,
    DataType,
    DeadLetter,
    DeviceType,
    Reading,
    WriteBatch,
    WriteResult,
)
from storage.retry import Backoff
from storage.tables import dead_letters, energy_parent, energy_partition, iot_devices, metadata
from storage.writer import BatchWriter, UnknownDevices

__all__ = [
    "DATA_TYPE_OF",
    "Backend",
    "Backoff",
    "BatchWriter",
    "DataType",
    "DeadLetter",
    "DeviceType",
    "Reading",
    "SQLiteOptions",
    "StorageError",
    "Synchronous",
    "UnknownDevices",
    "UnsupportedDatabaseError",
    "WriteBatch",
    "WriteError",
    "WriteResult",
    "backend_for",
    "database_url",
    "dead_letters",
    "energy_parent",
    "energy_partition",
    "iot_devices",
    "metadata",
    "open_engine",
]
