"""Monthly partitions of `energy_data`: naming, creation and the view over them."""

from partitions.errors import InvalidMonthError, PartitionError
from partitions.manager import PartitionFactory, PartitionSet
from partitions.naming import BASE_NAME, Month, month_of_table
from partitions.view import VIEW_NAME, view_ddl

__all__ = [
    "BASE_NAME",
    "VIEW_NAME",
    "InvalidMonthError",
    "Month",
    "PartitionError",
    "PartitionFactory",
    "PartitionSet",
    "month_of_table",
    "view_ddl",
]
