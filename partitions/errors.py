"""Errors raised by the partitions package.

PartitionError
└── InvalidMonthError   a date outside the months meterflow partitions
"""

from __future__ import annotations


class PartitionError(Exception):
    """Base class of every error the partitions package raises."""


class InvalidMonthError(PartitionError, ValueError):
    """A year or month that cannot name a partition."""
