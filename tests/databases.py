"""The databases storage tests run against: a SQLite file, a fresh PostgreSQL database."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg

POSTGRES_ADMIN_URL = os.environ.get(
    "METERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class Database(Protocol):
    kind: str
    url: str

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str) -> None: ...


class SQLiteDatabase:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        with closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql).fetchall()

    def execute(self, sql: str) -> None:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute(sql)


class PostgresDatabase:
    kind = "postgres"

    def __init__(self, admin_url: str, name: str) -> None:
        self.name = name
        self.dsn = admin_url.rsplit("/", 1)[0] + f"/{name}"
        self.url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(sql.encode()).fetchall()

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.encode())


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL can be used, or None when one answers."""
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}".strip()


@contextmanager
def fresh_postgres() -> Iterator[PostgresDatabase]:
    """A database of its own, dropped afterwards whatever the test left connected to it."""
    name = f"meterflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield PostgresDatabase(POSTGRES_ADMIN_URL, name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def count_readings(database: Database) -> int:
    try:
        return int(database.query("SELECT count(*) FROM energy_data")[0][0])
    except (sqlite3.Error, psycopg.Error, IndexError):
        return 0


def as_utc(value: datetime | str) -> datetime:
    """A timestamp as read back from either backend (text in SQLite), as aware UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def partition_tables(database: Database) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if database.kind == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    return {name for (name,) in database.query(sql) if name.startswith("energy_data_")}
