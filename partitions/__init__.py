"""Monthly partitions of `energy_data`: naming, creation and the one name analysts query."""

from partitions.base import Partitions
from partitions.errors import InvalidMonthError, PartitionError
from partitions.naming import BASE_NAME, Month, month_of_table
from partitions.native import NativePartitions, partition_ddl
from partitions.repair import default_partition, default_rows, repair
from partitions.union_view import PartitionFactory, UnionViewPartitions
from partitions.view import VIEW_NAME, view_ddl

__all__ = [
    "BASE_NAME",
    "VIEW_NAME",
    "InvalidMonthError",
    "Month",
    "NativePartitions",
    "PartitionError",
    "PartitionFactory",
    "Partitions",
    "UnionViewPartitions",
    "default_partition",
    "default_rows",
    "month_of_table",
    "partition_ddl",
    "repair",
    "view_ddl",
]
