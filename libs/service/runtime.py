"""What a running service holds: database, outbox and relay, consumers, producer, auth, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
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
    resources: Any = None  # what the service's ServiceSpec.resources yielded
    relay: OutboxRelay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    events_ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def kafka_ready(self, timeout_s: float = 2.0) -> bool:
        if not self.events_ready.is_set() or self.producer is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.producer.client.force_metadata_update(), timeout_s))
        except Exception:
            return False

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask every loop to finish its current step, then cancel what is still running.

        Cancelling in the middle of a database call can leave a SQLite connection waiting on its
        worker thread, so loops get the chance to stop between steps first. Tasks started while we
        wait (start-up still in progress) are stopped too.
        """
        self.stopping.set()
        deadline = asyncio.get_running_loop().time() + grace_s
        while pending := [task for task in self.tasks if not task.done()]:
            if self.relay:
                self.relay.stop()
            for consumer in self.consumers:
                consumer.stop()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=grace_s)
                break
            await asyncio.wait(pending, timeout=min(remaining, 0.1))
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()


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
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # a half-started client keeps reconnecting in the background
                raise
            break
        except Exception as exc:
            log.warning("kafka not reachable yet", extra={"error": type(exc).__name__, "retry_in_s": delay})
            if await _stopped_within(runtime.stopping, delay):
                return
            delay = min(delay * 2, 10)
    runtime.producer = producer
    if runtime.stopping.is_set():
        return
    if settings.events.relay_enabled:
        runtime.relay = OutboxRelay(
            runtime.db,
            runtime.outbox,
            producer,
            batch_size=settings.events.relay_batch_size,
            poll_interval_s=settings.events.relay_poll_interval_s,
            linger_s=settings.events.relay_linger_s,
            metrics=runtime.metrics,
        )
        runtime.tasks.append(asyncio.create_task(runtime.relay.run(), name=f"{name}-relay"))
        runtime.tasks.append(
            asyncio.create_task(
                _outbox_housekeeping(
                    runtime.relay, runtime.stopping, timedelta(days=settings.events.published_retention_days)
                ),
                name=f"{name}-outbox-housekeeping",
            )
        )
    if settings.events.consumers_enabled:
        for spec in consumer_specs:
            runtime.tasks.append(asyncio.create_task(_run_consumer(runtime, spec, producer), name=spec.name))
    runtime.events_ready.set()


async def _run_consumer(runtime: ServiceRuntime, spec: Any, producer: Any) -> None:
    """Join the group (slow on some brokers, so off the readiness path) and consume until stopped."""
    settings = runtime.settings
    group = f"{settings.service_name}.{spec.name}"
    kafka = settings.kafka
    if spec.fetch_max_wait_ms is not None:
        kafka = kafka.model_copy(update={"fetch_max_wait_ms": spec.fetch_max_wait_ms})
    kafka_consumer = make_consumer(kafka, f"{group}-consumer", group, *spec.topics)
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
    try:
        while not runtime.stopping.is_set():
            try:
                if await _unless_stopped(runtime.stopping, kafka_consumer.start()):
                    await consumer.run()
                return
            except Exception:
                log.exception("consumer failed; restarting", extra={"consumer": group})
                await _stopped_within(runtime.stopping, 2)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kafka_consumer.stop(), 5)


async def _unless_stopped(stopping: asyncio.Event, step: Any) -> bool:
    """Run ``step`` unless ``stopping`` is set first (then cancel it); True if it completed."""
    work = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        waiter.cancel()
        work.result()
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    return False


async def pause(stopping: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    """Between two rounds of a background loop: return after ``seconds``, or as soon as
    ``stopping`` (or ``wake``, when given: work arrived) is set."""
    events = [stopping] if wake is None else [stopping, wake]
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    await pause(stopping, seconds)
    return stopping.is_set()


async def _outbox_housekeeping(
    relay: OutboxRelay,
    stopping: asyncio.Event,
    retention: timedelta,
    every_s: float = 5.0,
    purge_every: int = 720,
) -> None:
    """Export the outbox lag every ``every_s``; about hourly, delete rows published longer than
    ``retention`` ago (Kafka keeps the events; the rows only served the relay)."""
    ticks = 0
    while not stopping.is_set():
        with contextlib.suppress(Exception):
            await relay.measure_lag()
            if ticks % purge_every == 0:
                purged = await relay.purge_published(retention)
                if purged:
                    log.info("purged published outbox rows", extra={"rows": purged})
        ticks += 1
        await _stopped_within(stopping, every_s)
