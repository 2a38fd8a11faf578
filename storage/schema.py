"""Creating the base schema on a fresh database."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from partitions import VIEW_NAME, PartitionSet
from storage.tables import metadata


async def create_schema(conn: AsyncConnection, partitions: PartitionSet) -> None:
    """Create what is missing of the schema and load the partitions that exist."""
    async with conn.begin():
        await conn.run_sync(metadata.create_all)
        await partitions.load(conn)
        views = await conn.run_sync(lambda sync: inspect(sync).get_view_names())
        if VIEW_NAME not in views:
            await partitions.rebuild_view(conn)
