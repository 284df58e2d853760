"""What a running service holds: database, outbox and relay, consumers, producer, auth, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from tsunagu.auth import InternalAuth, ServiceTokenIssuer
from tsunagu.db import Database
from tsunagu.events import EventConsumer, Outbox, OutboxRelay, ensure_topics, make_consumer, make_producer
from tsunagu.events.kafka import dead_letter_topic
from tsunagu.events.schemas import registry
from tsunagu.obs import Metrics
from tsunagu.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    db: Database
    outbox: Outbox
    metrics: Metrics
    auth: InternalAuth | None
    issuer: ServiceTokenIssuer | None
    producer: Any = None
    relay: OutboxRelay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    events_ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def kafka_ready(self, timeout_s: float = 2.0) -> bool:
        if not self.events_ready.is_set() or self.producer is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.producer.client.force_metadata_update(), timeout_s))
        except Exception:
            return False

    async def stop(self) -> None:
        if self.relay:
            self.relay.stop()
        for consumer in self.consumers:
            consumer.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.consumer.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        await self.db.dispose()


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def start_events(runtime: ServiceRuntime, consumer_specs: list[Any]) -> None:
    """Bring up the producer, relay and consumers, retrying until Kafka answers (never crash)."""
    settings = runtime.settings
    name = settings.service_name
    topics = {t: settings.kafka.default_partitions for t in registry.topics()}
    for spec in consumer_specs:
        for topic in spec.topics:
            topics.setdefault(topic, settings.kafka.default_partitions)
            topics[dead_letter_topic(topic)] = 1
    delay = 0.5
    while True:
        try:
            await ensure_topics(settings.kafka, topics, client_id=f"{name}-admin")
            producer = make_producer(settings.kafka, f"{name}-producer")
            await producer.start()
            break
        except Exception as exc:
            log.warning("kafka not reachable yet", extra={"error": type(exc).__name__, "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
    runtime.producer = producer
    if settings.events.relay_enabled:
        runtime.relay = OutboxRelay(
            runtime.db,
            runtime.outbox,
            producer,
            batch_size=settings.events.relay_batch_size,
            poll_interval_s=settings.events.relay_poll_interval_s,
            metrics=runtime.metrics,
        )
        runtime.tasks.append(asyncio.create_task(runtime.relay.run(), name=f"{name}-relay"))
        runtime.tasks.append(asyncio.create_task(_export_outbox_lag(runtime.relay), name=f"{name}-lag"))
    if settings.events.consumers_enabled:
        for spec in consumer_specs:
            await _start_consumer(runtime, spec, producer)
    runtime.events_ready.set()


async def _start_consumer(runtime: ServiceRuntime, spec: Any, producer: Any) -> None:
    settings = runtime.settings
    group = f"{settings.service_name}.{spec.name}"
    kafka_consumer = make_consumer(settings.kafka, f"{group}-consumer", group, *spec.topics)
    await kafka_consumer.start()
    consumer = EventConsumer(
        name=group,
        consumer=kafka_consumer,
        producer=producer,
        db=runtime.db,
        tables=spec.tables,
        registry=registry,
        handlers=spec.handlers,
        max_attempts=settings.events.consumer_max_attempts,
        backoff_initial_s=settings.events.consumer_backoff_initial_s,
        backoff_max_s=settings.events.consumer_backoff_max_s,
        metrics=runtime.metrics,
    )
    runtime.consumers.append(consumer)
    runtime.tasks.append(asyncio.create_task(_keep_running(consumer), name=group))


async def _keep_running(consumer: EventConsumer) -> None:
    while True:
        try:
            await consumer.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("consumer crashed; restarting", extra={"consumer": consumer.name})
            await asyncio.sleep(1)


async def _export_outbox_lag(relay: OutboxRelay) -> None:
    while True:
        with contextlib.suppress(Exception):
            await relay.measure_lag()
        await asyncio.sleep(5)
