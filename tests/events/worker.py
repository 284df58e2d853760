"""A relay or consumer in its own process, so tests can kill it at a failpoint (SIGKILL).

python -m tests.events.worker relay <db-url> <bootstrap>
python -m tests.events.worker consume <db-url> <bootstrap> <group> <expected-applied>
"""

from __future__ import annotations

import asyncio
import sys

from tests.events import support
from tsunagu.db import Database
from tsunagu.events import Outbox, OutboxRelay, make_producer
from tsunagu.settings import KafkaSettings


async def relay(db_url: str, bootstrap: str) -> None:
    db = Database(db_url)
    producer = make_producer(
        KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=200),
        "worker-relay",
    )
    await producer.start()
    relay = OutboxRelay(db, Outbox(support.tables, source="/test"), producer, batch_size=500)
    while await relay.publish_batch():
        pass
    await producer.stop()
    await db.dispose()


async def consume(db_url: str, bootstrap: str, group: str, expected: int) -> None:
    db = Database(db_url)
    consumer, task = await support.start_consumer(
        db,
        KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=200),
        group,
    )

    async def done() -> bool:
        return await support.count(db, support.applied) >= expected

    await support.wait_until(done, timeout_s=30)
    await support.stop_consumer(consumer, task)
    await db.dispose()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "relay":
        asyncio.run(relay(*args))
    else:
        asyncio.run(consume(args[0], args[1], args[2], int(args[3])))
