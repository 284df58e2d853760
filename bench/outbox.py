"""Outbox benchmark: raw Kafka produce ceiling, relay throughput, commit-to-consume latency.

    python -m bench.outbox [--events 50000] [--rate 500] [--seconds 10] [--quick]
                           [--batch-sizes 500,1000,2000] [--output-dir bench/results]
                           [--profile relay.prof]

Starts its own tansu broker (memory storage) and a fresh PostgreSQL database (dropped at the end),
then measures in one run:

1. ``kafka_raw_produce_events_per_s``: a producer from ``make_producer`` (acks=all) sends N 1 KB
   values keyed over 1000 keys and awaits every ack: the ceiling the relay cannot beat.
2. ``outbox_relay_events_per_s``: the outbox is pre-filled with N 1 KB events, then
   ``OutboxRelay.publish_batch()`` is called until the outbox is drained, for each batch size; the
   best is the metric. The topic must then hold N records (sum of fetch highwaters).
3. ``outbox_commit_to_consume_*_ms``: a writer commits one event per transaction at ``--rate``
   events/s for ``--seconds`` s while ``OutboxRelay.run()`` runs in the background and an
   ``EventConsumer`` (real path: inbox claim + handler in one transaction) consumes the topic in a
   second process; latency = handler time − time right after the writer's commit.

Writes ``<output-dir>/outbox.json`` and regenerates the report: ``BENCHMARKS.md`` at the root for
the default output directory, ``<output-dir>/BENCHMARKS.md`` otherwise (so smoke runs leave the
committed results alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import json
import logging
import math
import multiprocessing as mp
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
from aiokafka import TopicPartition
from sqlalchemy import MetaData, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import RESULTS_DIR, metric
from bench.report import publish
from tsunagu.db import Database
from tsunagu.devstack.tansu import TansuBroker
from tsunagu.events import (
    EventConsumer,
    EventRegistry,
    EventSchema,
    Outbox,
    OutboxRelay,
    ReceivedEvent,
    define_event_tables,
    ensure_topics,
    make_consumer,
    make_producer,
)
from tsunagu.settings import KafkaSettings

log = logging.getLogger("bench.outbox")

PG_ADMIN_DSN = os.environ.get(
    "TSUNAGU_BENCH_PG_DSN",
    os.environ.get("TSUNAGU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
TOPIC = "tsunagu.bench.outbox"  # the latency phase: written via Outbox.add, read by EventConsumer
RAW_TOPIC = "tsunagu.benchraw.produce"
PARTITIONS = 3
KEYS = 1000
VALUE_BYTES = 1024
PREFILL_CHUNK = 1000
CONSUMER_EVENTS = 10_000  # the EventConsumer is much slower than the relay: bound its phase
SOURCE = "/tsunagu/bench"

metadata = MetaData()
tables = define_event_tables(metadata)
registry = EventRegistry()


@registry.register
class BenchEventV1(EventSchema):
    event_type: ClassVar[str] = "tsunagu.bench.outbox.emitted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC

    key: str
    seq: int
    pad: str = ""

    def partition_key(self) -> str | None:
        return self.key


def relay_topic(batch_size: int) -> str:
    return f"tsunagu.benchrelay.b{batch_size}"


def key_for(i: int) -> str:
    return f"key-{i % KEYS:04d}"


def pad_for_1kb() -> str:
    """Padding that makes a typical envelope (as the relay publishes it) 1024 bytes long."""
    probe = BenchEventV1(key=key_for(0), seq=10_000, pad="").to_envelope(source=SOURCE)
    return "x" * max(0, VALUE_BYTES - len(probe.to_bytes()))


@dataclass
class Config:
    events: int
    rate: float
    seconds: float
    batch_sizes: list[int]
    output_dir: Path
    profile: Path | None
    quick: bool
    max_in_flight: int = 8
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Infrastructure


@contextlib.asynccontextmanager
async def fresh_database() -> Any:
    name = f"tsunagu_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield db
    finally:
        await db.dispose()
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def topic_size(kafka: KafkaSettings, topic: str, timeout_s: float = 20.0) -> int:
    """Records in ``topic``: the sum of the highwaters that fetches report (tansu's
    ListOffsets(latest) is wrong, so no ``end_offsets``)."""
    consumer = make_consumer(kafka, "bench-verify", None)
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or range(PARTITIONS))
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no highwater for every partition of {topic} in {timeout_s} s")
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
        return sum(int(consumer.highwater(tp)) for tp in tps)
    finally:
        await consumer.stop()


async def unpublished(db: Database) -> int:
    async with db.sessions() as session:
        table = tables.outbox
        result = await session.execute(
            select(func.count()).select_from(table).where(table.c.published_at.is_(None))
        )
        return int(result.scalar_one())


async def reset_outbox(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("TRUNCATE event_outbox, event_inbox"))


# ---------------------------------------------------------------------------------------------
# 1. Raw produce


async def raw_produce(kafka: KafkaSettings, n: int, value: bytes) -> float:
    producer = make_producer(kafka, "bench-raw")
    await producer.start()
    try:
        await producer.partitions_for(RAW_TOPIC)  # metadata outside the timed part
        headers = [("content-type", b"application/cloudevents+json")]
        started = time.perf_counter()
        acks = [
            await producer.send(RAW_TOPIC, value=value, key=key_for(i).encode(), headers=headers)
            for i in range(n)
        ]
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    size = await topic_size(kafka, RAW_TOPIC)
    if size != n:
        raise RuntimeError(f"raw produce: topic {RAW_TOPIC} holds {size} records, expected {n}")
    return n / elapsed


# ---------------------------------------------------------------------------------------------
# 2. Relay throughput


async def prefill(db: Database, topic: str, n: int, pad: str) -> float:
    """Bulk-insert n events with exactly the columns Outbox.add writes, PREFILL_CHUNK rows per
    transaction (one executemany each). Returns rows/s."""
    started = time.perf_counter()
    for offset in range(0, n, PREFILL_CHUNK):
        rows = []
        for i in range(offset, min(n, offset + PREFILL_CHUNK)):
            envelope = BenchEventV1(key=key_for(i), seq=i, pad=pad).to_envelope(source=SOURCE)
            rows.append(
                {
                    "event_id": envelope.id,
                    "topic": topic,
                    "partition_key": envelope.partitionkey,
                    "payload": envelope.to_bytes(),
                    "created_at": datetime.now(UTC),
                }
            )
        async with db.transaction() as session:
            await session.execute(insert(tables.outbox), rows)
    elapsed = time.perf_counter() - started
    async with db.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE event_outbox"))
    return n / elapsed


async def relay_throughput(
    db: Database, kafka: KafkaSettings, n: int, batch_size: int, pad: str, profile: Path | None
) -> tuple[float, float, int]:
    """(events/s, prefill rows/s, batches) for draining n pre-filled events."""
    await reset_outbox(db)
    topic = relay_topic(batch_size)
    fill_rate = await prefill(db, topic, n, pad)
    producer = make_producer(kafka, f"bench-relay-{batch_size}")
    await producer.start()
    profiler = cProfile.Profile() if profile else None
    try:
        await producer.partitions_for(topic)
        relay = OutboxRelay(db, Outbox(tables, source=SOURCE), producer, batch_size=batch_size)
        published = batches = 0
        deadline = time.monotonic() + max(120.0, n / 200)
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        while published < n:
            count = await relay.publish_batch()
            if count == 0:
                break
            published += count
            batches += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay batch {batch_size}: only {published}/{n} published in time")
        elapsed = time.perf_counter() - started
        if profiler:
            profiler.disable()
    finally:
        await producer.stop()
    if profiler and profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(profile))
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        print(out.getvalue(), file=sys.stderr)
    left = await unpublished(db)
    size = await topic_size(kafka, topic)
    if published != n or left != 0 or size != n:
        raise RuntimeError(
            f"relay batch {batch_size}: published {published}, left {left} unpublished, topic {topic}"
            f" holds {size} records; expected {n}"
        )
    return n / elapsed, fill_rate, batches


# ---------------------------------------------------------------------------------------------
# 3. Commit-to-consume latency


async def join_group(consumer: EventConsumer, kafka_consumer: Any, deadline: float) -> None:
    """Join the group and resolve the starting offsets (records fetched meanwhile are processed)."""
    while not kafka_consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError("consumer got no partition assignment")
        batches = await kafka_consumer.getmany(timeout_ms=100)
        for records in batches.values():
            for record in records:
                await consumer.process(record)
    for tp in kafka_consumer.assignment():
        await kafka_consumer.position(tp)


async def consumer_throughput(db: Database, kafka: KafkaSettings, topic: str, n: int) -> float:
    """EventConsumer (inbox claim + no-op handler per record) draining n events of ``topic``."""
    await reset_outbox(db)
    handled = 0

    async def handle(_session: AsyncSession, _event: ReceivedEvent) -> None:
        nonlocal handled
        handled += 1

    kafka_consumer = make_consumer(kafka, "bench-drain-c", "bench-drain", topic)
    producer = make_producer(kafka, "bench-drain-dlq")
    await kafka_consumer.start()
    await producer.start()
    consumer = EventConsumer(
        name="bench-drain",
        consumer=kafka_consumer,
        producer=producer,
        db=db,
        tables=tables,
        registry=registry,
        handlers={BenchEventV1.event_type: handle},
    )
    task: asyncio.Task[None] | None = None
    try:
        deadline = time.monotonic() + 60
        await join_group(consumer, kafka_consumer, deadline)
        before, started = handled, time.perf_counter()
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + max(60.0, n / 50)
        while handled < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer drained only {handled} of {n} events in time")
            if task.done():
                task.result()
                raise RuntimeError("consumer stopped early")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        consumer.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10)
        await kafka_consumer.stop()
        await producer.stop()
    return (handled - before) / elapsed


class FetchClock:
    """Wraps an AIOKafkaConsumer to note when each record came out of ``getmany``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[tuple[str, int, int], tuple[float, float]] = {}
        self.stats = {"getmany_calls": 0, "getmany_s": 0.0, "records": 0, "commit_calls": 0, "commit_s": 0.0}

    async def getmany(self, *partitions: Any, **options: Any) -> Any:
        started = time.perf_counter()
        batches = await self.inner.getmany(*partitions, **options)
        self.stats["getmany_s"] += time.perf_counter() - started
        self.stats["getmany_calls"] += 1
        now = time.time()
        for records in batches.values():
            self.stats["records"] += len(records)
            for record in records:
                self.seen[(record.topic, record.partition, record.offset)] = (now, record.timestamp / 1000)
        return batches

    async def commit(self, offsets: Any = None) -> None:
        started = time.perf_counter()
        await self.inner.commit(offsets)
        self.stats["commit_s"] += time.perf_counter() - started
        self.stats["commit_calls"] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def consumer_process(
    bootstrap: str,
    db_url: str,
    group: str,
    ready: Any,
    stop: Any,
    expected: Any,
    result_path: str,
    max_seconds: float,
) -> None:
    """Second process: an EventConsumer whose handler records the receive time of each event.
    Writes ``{"received": ..., "stats": ...}`` (or ``{"error": ...}``) to ``result_path``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s consumer %(levelname)s %(message)s")
    outcome: dict[str, Any] = {}
    try:
        asyncio.run(_consume(bootstrap, db_url, group, ready, stop, expected, max_seconds, outcome))
    except BaseException as exc:
        outcome["error"] = repr(exc)
        raise
    finally:
        Path(result_path).write_text(json.dumps(outcome), encoding="utf-8")


async def _consume(
    bootstrap: str,
    db_url: str,
    group: str,
    ready: Any,
    stop: Any,
    expected: Any,
    max_seconds: float,
    outcome: dict[str, Any],
) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    db = Database(db_url, pool_size=2)
    # event id -> [handler time, time getmany returned the record, record CreateTime (set by the
    # relay's producer at send)], all in seconds since the epoch.
    received: dict[str, list[float]] = {}

    async def handle(_session: AsyncSession, event: ReceivedEvent) -> None:
        now = time.time()
        fetched, created = kafka_consumer.seen.get((event.topic, event.partition, event.offset), (now, now))
        received[event.envelope.id] = [now, fetched, created]

    kafka_consumer = FetchClock(make_consumer(kafka, f"{group}-c", group, TOPIC))
    producer = make_producer(kafka, f"{group}-dlq")
    await kafka_consumer.start()
    await producer.start()
    consumer = EventConsumer(
        name=group,
        consumer=kafka_consumer,
        producer=producer,
        db=db,
        tables=tables,
        registry=registry,
        handlers={BenchEventV1.event_type: handle},
    )
    run_started = time.monotonic()
    deadline = run_started + max_seconds
    task: asyncio.Task[None] | None = None
    try:
        await join_group(consumer, kafka_consumer, deadline)
        ready.set()
        run_started = time.monotonic()
        task = asyncio.create_task(consumer.run())
        while not stop.is_set() and time.monotonic() < deadline:
            if 0 <= expected.value <= len(received):
                break
            if task.done():
                task.result()
                break
            await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10)
        await kafka_consumer.stop()
        await producer.stop()
        await db.dispose()
        stats = {**kafka_consumer.stats, "seconds": time.monotonic() - run_started}
        outcome.update(received=received, stats=stats)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LatencyResult:
    latencies_ms: list[float]
    segments_ms: dict[str, list[float]]
    consumer_stats: dict[str, float]
    committed: int
    achieved_rate: float
    writer_seconds: float
    drain_seconds: float


async def latency_phase(db: Database, kafka: KafkaSettings, config: Config, pad: str) -> LatencyResult:
    await reset_outbox(db)
    total = max(1, int(config.rate * config.seconds))
    max_seconds = config.seconds * 3 + 90
    context = mp.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    expected = context.Value("q", -1)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as scratch:
        result_path = Path(scratch) / "received.json"
        child = context.Process(
            target=consumer_process,
            args=(
                kafka.bootstrap_servers,
                db.url,
                "bench-latency",
                ready,
                stop,
                expected,
                str(result_path),
                max_seconds,
            ),
            name="bench-outbox-consumer",
        )
        child.start()
        try:
            started = time.monotonic()
            while not ready.is_set():
                if not child.is_alive():
                    raise RuntimeError(f"consumer process exited early (code {child.exitcode})")
                if time.monotonic() - started > 60:
                    raise RuntimeError("consumer process not ready within 60 s")
                await asyncio.sleep(0.05)
            commit_times, writer_seconds, drain_seconds = await _write_with_relay(
                db, kafka, config, total, pad
            )
            expected.value = len(commit_times)
            await asyncio.to_thread(child.join, max_seconds)
        finally:
            stop.set()
            await asyncio.to_thread(child.join, 15)
            if child.is_alive():
                child.kill()  # our own child, by handle
                child.join(5)
        if not result_path.exists():
            raise RuntimeError(f"consumer process wrote no result (exit code {child.exitcode})")
        result = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in result:
        raise RuntimeError(f"consumer process failed: {result['error']}")
    received: dict[str, list[float]] = result["received"]
    missing = set(commit_times) - set(received)
    if missing:
        raise RuntimeError(f"latency: {len(missing)} of {len(commit_times)} committed events never consumed")
    latencies = sorted((received[i][0] - commit_times[i]) * 1000 for i in commit_times)
    segments = {
        "commit -> relay send": sorted((received[i][2] - commit_times[i]) * 1000 for i in commit_times),
        "send -> fetched": sorted((received[i][1] - received[i][2]) * 1000 for i in commit_times),
        "fetched -> handler": sorted((received[i][0] - received[i][1]) * 1000 for i in commit_times),
    }
    return LatencyResult(
        latencies_ms=latencies,
        segments_ms=segments,
        consumer_stats=result["stats"],
        committed=len(commit_times),
        achieved_rate=len(commit_times) / writer_seconds,
        writer_seconds=writer_seconds,
        drain_seconds=drain_seconds,
    )


async def _write_with_relay(
    db: Database, kafka: KafkaSettings, config: Config, total: int, pad: str
) -> tuple[dict[str, float], float, float]:
    """Open-loop writer (absolute deadlines, at most ``max_in_flight`` transactions at once) with the
    relay running in the background on the same event loop. Returns commit times, writer seconds
    and the time the relay needed after the last commit to drain the outbox."""
    outbox = Outbox(tables, source=SOURCE)
    producer = make_producer(kafka, "bench-latency-relay")
    await producer.start()
    await producer.partitions_for(TOPIC)
    relay = OutboxRelay(db, outbox, producer)
    relay_task = asyncio.create_task(relay.run())
    commit_times: dict[str, float] = {}
    slots = asyncio.Semaphore(config.max_in_flight)

    async def write_one(seq: int) -> None:
        try:
            async with db.transaction() as session:
                envelope = await outbox.add(session, BenchEventV1(key=key_for(seq), seq=seq, pad=pad))
            commit_times[envelope.id] = time.time()
        finally:
            slots.release()

    loop = asyncio.get_running_loop()
    interval = 1.0 / config.rate
    hard_stop = config.seconds * 3 + 10
    writers: list[asyncio.Task[None]] = []
    try:
        start = loop.time()
        for seq in range(total):
            delay = start + seq * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() - start > hard_stop:
                log.warning("writer stopped after %d of %d events: too slow", seq, total)
                break
            await slots.acquire()
            writers.append(asyncio.create_task(write_one(seq)))
        await asyncio.gather(*writers)
        writer_seconds = loop.time() - start
        drain_started = time.monotonic()
        while await unpublished(db):
            if time.monotonic() - drain_started > 60:
                raise RuntimeError("relay did not drain the outbox within 60 s")
            await asyncio.sleep(0.02)
        drain_seconds = time.monotonic() - drain_started
    finally:
        relay.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(relay_task, 10)
        await producer.stop()
    return commit_times, writer_seconds, drain_seconds


# ---------------------------------------------------------------------------------------------


async def run(config: Config) -> dict[str, dict[str, Any]]:
    pad = pad_for_1kb()
    sample = BenchEventV1(key=key_for(0), seq=10_000, pad=pad).to_envelope(source=SOURCE).to_bytes()
    notes = config.notes
    with tempfile.TemporaryDirectory(prefix="bench-tansu-") as scratch:
        broker = TansuBroker(log_path=Path(scratch) / "tansu.log").start()
        try:
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
            topics = {RAW_TOPIC: PARTITIONS, TOPIC: PARTITIONS, TOPIC + ".dlq": 1}
            topics |= {relay_topic(size): PARTITIONS for size in config.batch_sizes}
            await ensure_topics(kafka, topics)
            async with fresh_database() as db:
                return await _measure(db, kafka, config, pad, sample, notes)
        except BaseException:
            log_file = Path(scratch) / "tansu.log"
            if log_file.exists():
                tail = log_file.read_text(errors="replace").splitlines()[-20:]
                print("tansu log tail:\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            broker.stop()


async def _measure(
    db: Database, kafka: KafkaSettings, config: Config, pad: str, sample: bytes, notes: list[str]
) -> dict[str, dict[str, Any]]:
    n = config.events
    say = functools.partial(print, file=sys.stderr, flush=True)
    if config.quick:
        notes.append("quick smoke run: figures are not representative")
    notes.append(
        f"setup: N={n} events of {len(sample)} B (CloudEvents JSON envelope), keys spread over {KEYS};"
        f" topics with {PARTITIONS} partitions on one tansu broker (memory storage) and PostgreSQL,"
        " both on loopback on the same machine; producers from make_producer (acks=all,"
        f" linger_ms=2, not idempotent); load average at start {_loadavg()}."
    )

    say(f"raw produce: {n} x {len(sample)} B ...")
    raw_rate = await raw_produce(kafka, n, sample)
    say(f"  {raw_rate:,.0f} events/s")
    notes.append("raw produce: send() all N records, then await every ack; the topic is checked to hold N.")

    relay_rates: dict[int, float] = {}
    relay_notes = []
    for size in config.batch_sizes:
        say(f"relay batch {size}: prefill {n} ...")
        profile = config.profile if config.profile and size == config.batch_sizes[0] else None
        rate, fill_rate, batches = await relay_throughput(db, kafka, n, size, pad, profile)
        relay_rates[size] = rate
        say(f"  {rate:,.0f} events/s ({batches} batches; prefill {fill_rate:,.0f} rows/s)")
        relay_notes.append(
            f"relay batch_size={size}: {rate:,.0f} events/s over {batches} publish_batch() calls"
            f"{' (under cProfile)' if profile else ''}; prefill {fill_rate:,.0f} rows/s."
        )
    best = max(relay_rates, key=lambda size: relay_rates[size])
    notes.append(
        "relay: the outbox is pre-filled by bulk INSERT (one executemany per transaction of"
        f" {PREFILL_CHUNK} rows) of exactly the columns Outbox.add writes, then VACUUM ANALYZE;"
        " OutboxRelay.publish_batch() is then timed in a loop until the outbox is drained, and the"
        f" topic is checked to hold N records (sum of fetch highwaters). Metric = best batch size ({best})."
    )
    notes += relay_notes

    drain_n = min(n, CONSUMER_EVENTS)
    say(f"consumer: drain {drain_n} events ...")
    consumer_rate = await consumer_throughput(db, kafka, relay_topic(config.batch_sizes[0]), drain_n)
    say(f"  {consumer_rate:,.0f} events/s")
    notes.append(
        "consumer: an EventConsumer (decode, inbox claim + no-op handler in one transaction per"
        f" record, offsets committed per partition after each fetch) in its own group drains {drain_n}"
        " of the relay's records, in this process, timed after the group join."
    )

    say(f"latency: {config.rate:g} events/s for {config.seconds:g} s ...")
    latency = await latency_phase(db, kafka, config, pad)
    values = latency.latencies_ms
    p50, p90, p99 = (percentile(values, q) for q in (50, 90, 99))
    segments = "; ".join(
        f"{name} p50 {percentile(v, 50):.1f} / p99 {percentile(v, 99):.1f} ms"
        for name, v in latency.segments_ms.items()
    )
    say(f"  p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {values[-1]:.1f} ms,")
    say(f"  {latency.achieved_rate:,.0f} events/s achieved; {segments}")
    stats = latency.consumer_stats
    notes += [
        "latency: a writer commits 1 event per transaction via Outbox.add, open loop at"
        f" {config.rate:g}/s for {config.seconds:g} s (absolute deadlines, at most"
        f" {config.max_in_flight} transactions in flight); achieved {latency.achieved_rate:,.0f}"
        f" events/s ({latency.committed} events in {latency.writer_seconds:.2f} s).",
        "latency: the writer and OutboxRelay.run() (batch 500, woken on commit by the Outbox) share"
        " one process and event loop; the EventConsumer (own group, fetch_max_wait_ms 20) runs in a"
        " second process.",
        "latency: commit time = time.time() right after the writer's commit, kept in a dict by event"
        " id; consume time = time.time() when the EventConsumer handler runs (inside its inbox"
        " transaction, before that commits); latency = consume time - commit time.",
        f"latency: p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {values[-1]:.1f} ms;"
        f" the outbox was drained {latency.drain_seconds:.2f} s after the last commit.",
        "latency breakdown (send = record CreateTime stamped by the relay's producer, ms resolution;"
        f" fetched = when the consumer's getmany returned the record): {segments}.",
        f"latency: the consumer made {stats['getmany_calls']} getmany calls"
        f" ({stats['getmany_s']:.2f} s waiting in them) and {stats['commit_calls']} offset commits"
        f" ({stats['commit_s']:.2f} s) in {stats['seconds']:.1f} s; the rest was spent processing"
        " records, one transaction each.",
    ]
    load = config.rate / consumer_rate
    if load > 0.7:
        notes.append(
            f"latency: the offered {config.rate:g} events/s is {load:.0%} of the EventConsumer's"
            f" measured capacity ({consumer_rate:,.0f} events/s), so most of the latency is records"
            " queueing in front of the consumer (send -> fetched and fetched -> handler above), not"
            " the relay (commit -> relay send)."
        )
    return {
        "kafka_raw_produce_events_per_s": metric(raw_rate, "events/s", "higher"),
        "outbox_relay_events_per_s": metric(relay_rates[best], "events/s", "higher", target=5000),
        "event_consumer_events_per_s": metric(consumer_rate, "events/s", "higher"),
        "outbox_commit_to_consume_p99_ms": metric(p99, "ms", "lower", target=100),
        "outbox_commit_to_consume_p50_ms": metric(p50, "ms", "lower"),
        "outbox_commit_to_consume_p90_ms": metric(p90, "ms", "lower"),
        "outbox_commit_to_consume_max_ms": metric(values[-1], "ms", "lower"),
        "outbox_latency_achieved_rate_events_per_s": metric(latency.achieved_rate, "events/s", "higher"),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="N for the throughput phases (50000)")
    parser.add_argument("--rate", type=float, default=500.0, help="latency phase events/s (500)")
    parser.add_argument("--seconds", type=float, default=None, help="latency phase duration (10)")
    parser.add_argument("--batch-sizes", default="500,1000,2000", help="relay batch sizes to try")
    parser.add_argument("--quick", action="store_true", help="small smoke run (3000 events, 2 s)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the first relay run")
    args = parser.parse_args(argv)
    events = args.events if args.events is not None else 3000 if args.quick else 50_000
    seconds = args.seconds if args.seconds is not None else 2.0 if args.quick else 10.0
    sizes = [int(part) for part in args.batch_sizes.split(",") if part.strip()]
    if events < 1 or args.rate <= 0 or seconds <= 0 or not sizes or min(sizes) < 1:
        parser.error("events, rate, seconds and batch sizes must be positive")
    return Config(
        events=events,
        rate=args.rate,
        seconds=seconds,
        batch_sizes=sizes,
        output_dir=args.output_dir,
        profile=args.profile,
        quick=args.quick,
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse_args(argv)
    started = time.monotonic()
    metrics = asyncio.run(run(config))
    config.notes.append(f"the whole run took {time.monotonic() - started:.0f} s.")
    publish("outbox", metrics, config.notes, config.output_dir)


if __name__ == "__main__":
    main()
