"""Each backbone test gets its own PostgreSQL database and its own tansu broker: no shared offsets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.events import support
from tests.fixtures.infra import PG_ADMIN_DSN
from tsunagu.db import Database
from tsunagu.devstack.tansu import TansuBroker
from tsunagu.events import Outbox, ensure_topics
from tsunagu.settings import KafkaSettings


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    name = f"tsunagu_ev_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    database = Database(f"{base}/{name}")
    await support.create_schema(database)
    yield database
    await database.dispose()
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


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
