"""Monthly partitions of `energy_data`: naming, creation and the one name analysts query."""

from partitions.base import Partitions
from partitions.errors import InvalidMonthError, PartitionError
from partitions.naming import BASE_NAME, Month, month_of_table
from partitions.native import NativePartitions, partition_ddl
from partitions.postgres_store import PostgresPartitionStore
from partitions.pruning import months_between, source_for
from partitions.repair import default_partition, default_rows, repair
from partitions.retention import (
    MIN_KEEP_MONTHS,
    RetentionAction,
    apply_retention,
    months_back,
    parse_age,
    retired,
)
from partitions.shape import add_missing_columns, missing_columns
from partitions.sqlite_store import SQLitePartitionStore
from partitions.store import PartitionInfo, PartitionStore
from partitions.union_view import PartitionFactory, UnionViewPartitions
from partitions.view import VIEW_NAME, view_ddl

__all__ = [
    "BASE_NAME",
    "MIN_KEEP_MONTHS",
    "VIEW_NAME",
    "InvalidMonthError",
    "Month",
    "NativePartitions",
    "PartitionError",
    "PartitionFactory",
    "PartitionInfo",
    "PartitionStore",
    "Partitions",
    "PostgresPartitionStore",
    "RetentionAction",
    "SQLitePartitionStore",
    "UnionViewPartitions",
    "add_missing_columns",
    "apply_retention",
    "default_partition",
    "default_rows",
    "missing_columns",
    "month_of_table",
    "months_back",
    "months_between",
    "parse_age",
    "partition_ddl",
    "repair",
    "retired",
    "source_for",
    "view_ddl",
]
