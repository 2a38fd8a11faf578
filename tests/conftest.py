from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meterflow.publisher import Publisher
from tests.databases import (
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    fresh_postgres,
    postgres_unavailable,
)
from tests.helpers import RECEIVE_PATH
from tests.mosquitto import Mosquitto, require_mosquitto


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if RECEIVE_PATH == "meterflow":
        return
    skip = pytest.mark.skip(reason="pins a behaviour only our own subscriber has")
    for item in items:
        if item.get_closest_marker("own_subscriber"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One Mosquitto for the session, from config/mosquitto.conf, on a free port."""
    require_mosquitto()
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as mosquitto:
        yield mosquitto


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own, which the test may stop and restart."""
    require_mosquitto()
    with Mosquitto(tmp_path / "mosquitto") as mosquitto:
        yield mosquitto


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test publishes under."""
    return f"mf-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "meterflow.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each backend in turn: a SQLite file, then a PostgreSQL database made for the test."""
    if request.param == "sqlite":
        yield SQLiteDatabase(tmp_path / "data" / "meterflow.db")
        return
    with _fresh_postgres_or_skip() as postgres:
        yield postgres


@pytest.fixture
def postgres() -> Iterator[PostgresDatabase]:
    """A PostgreSQL database made for this test, dropped afterwards."""
    with _fresh_postgres_or_skip() as database:
        yield database


@contextmanager
def _fresh_postgres_or_skip() -> Iterator[PostgresDatabase]:
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with fresh_postgres() as database:
        yield database


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    with Publisher("127.0.0.1", broker.port) as pub:
        yield pub
