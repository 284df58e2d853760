"""Each backbone test gets its own PostgreSQL database and its own tansu broker: no shared offsets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.events import support
from tsunagu.db import Database
from tsunagu.devstack.postgres import scratch_database
from tsunagu.devstack.tansu import TansuBroker
from tsunagu.events import Outbox, ensure_topics
from tsunagu.settings import KafkaSettings


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with scratch_database("tsunagu_ev") as url:
        database = Database(url)
        await support.create_schema(database)
        yield database
        await database.dispose()


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    instance = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield instance
    instance.stop()


@pytest.fixture
async def kafka(broker: TansuBroker) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, session_timeout_ms=2000, heartbeat_interval_ms=200
    )
    await ensure_topics(settings, {support.TOPIC: 3, support.TOPIC + ".dlq": 1})
    return settings


@pytest.fixture
def outbox() -> Outbox:
    return Outbox(support.tables, source="/tsunagu/test")
