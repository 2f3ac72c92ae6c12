"""Session-wide services for tests: a real Kafka-compatible broker and a real PostgreSQL, no mocks.

``kafka_bootstrap`` and ``postgres_dsn`` start, once per session and only when a test asks for them, the same
servers ``onex up`` uses, through :func:`framework.adapters.services.open_services`: the embedded ones, or the
external ones named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``POSTGRES_DSN`` (loopback only). Tests that use them are marked
``kafka`` / ``postgres`` automatically, so ``-m "not kafka and not postgres"`` runs the rest alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from framework.adapters.kafka_bus import KafkaEventBus
from framework.adapters.services import open_services

_SERVICE_MARKERS = {"kafka_bootstrap": "kafka", "postgres_dsn": "postgres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _SERVICE_MARKERS.items():
            if fixture in fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """A session-wide directory for the embedded servers' data and logs, removed at the end.

    Not under pytest's base temp dir: that one is mode 0700, and as root PostgreSQL runs as its own system user,
    which must be able to traverse every parent of its data directory (pytest resets that mode in every session).
    """
    path = Path(tempfile.mkdtemp(prefix="onex-test-services-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
async def kafka_bootstrap(services_dir: Path) -> AsyncIterator[str]:
    """``host:port`` of the session's Kafka broker (embedded Tansu unless ``KAFKA_BOOTSTRAP_SERVERS`` is set)."""
    async with contextlib.AsyncExitStack() as stack:
        endpoints = await open_services(stack, data_dir=services_dir, env=os.environ, need_postgres=False)
        yield endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
async def postgres_dsn(services_dir: Path) -> AsyncIterator[str]:
    """DSN of the session's PostgreSQL database (embedded unless ``POSTGRES_DSN`` is set).

    The database is shared by the whole session: use unique table names or clean up what you create.
    """
    async with contextlib.AsyncExitStack() as stack:
        endpoints = await open_services(stack, data_dir=services_dir, env=os.environ, need_kafka=False)
        yield endpoints.postgres_dsn


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[..., str]:
    """A factory of topic names no other test uses: ``unique_topic()`` or ``unique_topic("orders")``."""
    test_name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]

    def make(name: str = "topic") -> str:
        return f"test.{test_name}.{name}.{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
async def client_bus(kafka_bootstrap: str) -> AsyncIterator[KafkaEventBus]:
    """A started bus on the session's broker, for a test to publish and observe as another process would."""
    async with KafkaEventBus(kafka_bootstrap) as bus:
        yield bus


@pytest.fixture
async def db(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the session's database, for a test to look at what a host wrote."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()
