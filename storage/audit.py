"""The audit trail: every command that reads or changes personal data (a person's
readings, devices, exports, restores) appends who ran it, when, what it asked about and
how many rows it returned or changed, to `audit_log`, in the database it used. What was
read or written is not copied there: the trail says that someone looked, not what they
saw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    # The command as typed after `meterflow`, e.g. "query energy".
    command: str
    # What it was about: a device, a user, a span, a statement.
    target: str
    # Rows returned, written or changed; None where that is no measure.
    rows: int | None


_COLUMNS = tuple(field.name for field in fields(AuditEntry))


async def record(conn: AsyncConnection, entry: AuditEntry) -> None:
    """Append `entry`, in the caller's transaction."""
    await conn.execute(insert(audit_log).values({name: getattr(entry, name) for name in _COLUMNS}))


async def entries(conn: AsyncConnection, since: datetime | None = None) -> list[AuditEntry]:
    """The trail from `since` on (all of it: None), oldest first."""
    query = select(*(audit_log.c[name] for name in _COLUMNS)).order_by(audit_log.c.id)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    return [AuditEntry(*row) for row in await conn.execute(query)]
