"""The work items on the writer's queue: everything that uses its database connection.

Each is a small frozen dataclass carrying what it needs and a future for its outcome
(the Home Assistant recorder's tasks are the model). `BatchWriter` (storage/writer.py)
takes them off the queue one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import Month
from storage.records import WriteBatch, WriteResult


@dataclass(frozen=True, slots=True)
class StoreBatch:
    """Store a batch in one transaction; `done` gives its result once committed."""

    batch: WriteBatch
    done: asyncio.Future[WriteResult]


@dataclass(frozen=True, slots=True)
class Transact:
    """Run upkeep's `work` in a transaction of its own, between two batches."""

    work: Callable[[AsyncConnection], Awaitable[Any]]
    done: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class EnsurePartitions:
    """Create the partitions of `months` that are missing; `done` gives their table names."""

    months: tuple[Month, ...]
    done: asyncio.Future[list[str]]


@dataclass(frozen=True, slots=True)
class ReloadPartitions:
    """Read the partitions afresh (they may have changed behind the writer's back)."""

    done: asyncio.Future[frozenset[Month]]


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the connection idle while partitions are maintained from outside the writer:
    `held` is set once every batch before has committed; batches wait for `release`."""

    held: asyncio.Future[None]
    release: asyncio.Event


@dataclass(frozen=True, slots=True)
class Settle:
    """A queued batch failed: take it over on the general path (see `BatchWriter`)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish what is queued before, then end the loop."""


Task = StoreBatch | Transact | EnsurePartitions | ReloadPartitions | Hold | Settle | Stop
