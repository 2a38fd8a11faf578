"""What the writer needs from partitions, whichever way a database implements them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from partitions.naming import Month


class Partitions(Protocol):
    """The months a database has partitions for, and creating the missing ones.

    `ensure` runs in the caller's transaction and returns the months it created; the
    caller `confirm`s them once that transaction has committed, so a rolled-back creation
    is never believed in.
    """

    @property
    def months(self) -> frozenset[Month]: ...

    async def load(self, conn: AsyncConnection) -> None: ...

    async def ensure(self, conn: AsyncConnection, months: Iterable[Month]) -> list[Month]: ...

    def confirm(self, created: Iterable[Month]) -> None: ...
