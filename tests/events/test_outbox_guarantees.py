"""Proof that nothing is lost and nothing is applied twice (issue 2, item 5), on PostgreSQL + tansu."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.events import support
from tsunagu.db import Database
from tsunagu.events import CloudEvent, Outbox, OutboxRelay, ensure_topics, make_producer, replay_topic
from tsunagu.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]


def run_worker(*args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TSUNAGU_FAILPOINTS", None)
    if failpoint:
        env["TSUNAGU_FAILPOINTS"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "tests.events.worker", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )


async def publish_all(db: Database, outbox: Outbox, kafka: KafkaSettings) -> int:
    producer = make_producer(kafka, "test-relay")
    await producer.start()
    try:
        relay = OutboxRelay(db, outbox, producer)
        total = 0
        while published := await relay.publish_batch():
            total += published
        return total
    finally:
        await producer.stop()


async def topic_records(kafka: KafkaSettings, topic: str = support.TOPIC) -> list[CloudEvent]:
    return [record.envelope() async for record in replay_topic(kafka, topic)]


async def unpublished(db: Database) -> int:
    return await support.count(db, support.tables.outbox, support.tables.outbox.c.published_at.is_(None))


async def _drained(db: Database) -> bool:
    return await unpublished(db) == 0


async def _stop_relay(relay: OutboxRelay, running: asyncio.Task[None], producer: Any) -> None:
    relay.stop()
    await asyncio.wait_for(running, 30)
    await producer.stop()


async def test_a_rolled_back_state_change_publishes_no_event(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await outbox.add(session, support.CounterBumpedV1(key="k", seq=1))
            raise RuntimeError("the state change fails after the event was staged")
    await support.bump(db, outbox, "k", 2)  # a committed one, so the relay has something to do

    assert await publish_all(db, outbox, kafka) == 1
    events = await topic_records(kafka)
    assert [e.data["seq"] for e in events] == [2]
    assert await support.count(db, support.tables.outbox) == 1


async def test_b_relay_killed_after_ack_republishes_and_consumer_applies_once(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    for seq in range(20):
        await support.bump(db, outbox, f"key-{seq % 4}", seq)

    crashed = run_worker("relay", db.url, kafka.bootstrap_servers, failpoint="outbox.relay.after_ack=kill")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    # The broker acknowledged the batch, but the rows were never marked: they are still pending.
    assert len(await topic_records(kafka)) == 20
    assert await unpublished(db) == 20

    assert await publish_all(db, outbox, kafka) == 20
    assert len(await topic_records(kafka)) == 40  # at-least-once: every event twice on the topic
    assert await unpublished(db) == 0

    consumer, task = await support.start_consumer(db, kafka, "group-b")
    await support.wait_until(lambda: _all_offsets_consumed(consumer, 40))
    await support.stop_consumer(consumer, task)
    async with db.sessions() as session:
        event_ids = (await session.execute(select(support.applied.c.event_id))).scalars().all()
    assert len(event_ids) == 20 and len(set(event_ids)) == 20


async def _all_offsets_consumed(consumer, total: int) -> bool:  # type: ignore[no-untyped-def]
    committed = 0
    for tp in consumer.consumer.assignment():
        committed += await consumer.consumer.committed(tp) or 0
    return committed >= total


@pytest.mark.parametrize("failpoint", ["consumer.after_db_commit", "consumer.before_db_commit"])
async def test_c_consumer_killed_before_offset_commit_is_redelivered_and_applied_once(
    db: Database, outbox: Outbox, kafka: KafkaSettings, failpoint: str
):
    for seq in range(10):
        await support.bump(db, outbox, "one-key", seq)
    await publish_all(db, outbox, kafka)

    crashed = run_worker(
        "consume", db.url, kafka.bootstrap_servers, "group-c", "10", failpoint=f"{failpoint}=kill"
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    applied_before_restart = await support.count(db, support.applied)
    if failpoint == "consumer.after_db_commit":
        assert applied_before_restart >= 1  # applied and committed, but the offset never was
    else:
        assert applied_before_restart == 0  # killed inside the transaction: nothing applied

    finished = run_worker("consume", db.url, kafka.bootstrap_servers, "group-c", "10")
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    async with db.sessions() as session:
        rows = (
            (await session.execute(select(support.applied.c.seq).order_by(support.applied.c.id)))
            .scalars()
            .all()
        )
    assert rows == list(range(10))  # each once, in order, the crashed one included


async def test_d_per_key_order_across_three_partitions_and_two_consumers(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    first = await support.start_consumer(db, kafka, "group-d", name="first")
    second = await support.start_consumer(db, kafka, "group-d", name="second")
    await support.wait_until(lambda: _both_assigned(first[0], second[0]))

    keys = [f"person-{n}" for n in range(12)]
    for seq in range(25):
        for key in keys:
            await support.bump(db, outbox, key, seq)
    await publish_all(db, outbox, kafka)

    total = len(keys) * 25
    await support.wait_until(lambda: _count_at_least(db, total))
    for consumer, task in (first, second):
        await support.stop_consumer(consumer, task)

    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(support.applied.c.consumer, support.applied.c.key, support.applied.c.seq).order_by(
                    support.applied.c.id
                )
            )
        ).all()
    assert len(rows) == total
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_key[row.key].append(row.seq)
    assert all(seqs == list(range(25)) for seqs in by_key.values()), by_key
    assert {row.consumer for row in rows} == {"first", "second"}


async def _both_assigned(*consumers) -> bool:  # type: ignore[no-untyped-def]
    assignments = [c.consumer.assignment() for c in consumers]
    return all(assignments) and sum(len(a) for a in assignments) == 3


async def _count_at_least(db: Database, total: int) -> bool:
    return await support.count(db, support.applied) >= total


async def test_e_replay_from_offset_zero_rebuilds_the_live_state(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    for seq in range(30):
        await support.bump(db, outbox, f"key-{seq % 5}", seq)
    await publish_all(db, outbox, kafka)
    consumer, task = await support.start_consumer(db, kafka, "group-e")
    await support.wait_until(lambda: _count_at_least(db, 30))
    await support.stop_consumer(consumer, task)

    async with db.sessions() as session:
        live = {
            key: sorted(seqs)
            for key, seqs in _group(
                (await session.execute(select(support.applied.c.key, support.applied.c.seq))).all()
            ).items()
        }
    rebuilt: dict[str, list[int]] = defaultdict(list)
    async for record in replay_topic(kafka, support.TOPIC):
        event = support.registry.decode(record.envelope())
        assert isinstance(event, support.CounterBumpedV1)
        rebuilt[event.key].append(event.seq)
    assert {k: sorted(v) for k, v in rebuilt.items()} == live
    assert all(v == sorted(v) for v in rebuilt.values())  # replay order per key is the commit order
    async with db.sessions() as session:
        state = dict((await session.execute(select(support.counter.c.key, support.counter.c.value))).all())
    assert state == {k: v[-1] for k, v in rebuilt.items()}


def _group(rows) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    grouped: dict[str, list[int]] = defaultdict(list)
    for key, seq in rows:
        grouped[key].append(seq)
    return grouped


async def test_f_poison_event_goes_to_dead_letter_topic_and_the_consumer_moves_on(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    for seq in range(6):
        await support.bump(db, outbox, "same-key", seq, poison=seq == 2)
    await publish_all(db, outbox, kafka)
    # Two more records that no producer of ours would write: garbage, and an unknown schema version.
    producer = make_producer(kafka, "test-garbage")
    await producer.start()
    await producer.send_and_wait(support.TOPIC, b"{not json", key=b"same-key")
    future = (
        support.CounterBumpedV1(key="same-key", seq=99)
        .to_envelope(source="/x")
        .model_copy(update={"dataversion": 7})
    )
    await producer.send_and_wait(support.TOPIC, future.to_bytes(), key=b"same-key")
    await producer.stop()

    consumer, task = await support.start_consumer(db, kafka, "group-f", max_attempts=3)
    await support.wait_until(lambda: _count_at_least(db, 5))
    await support.wait_until(lambda: _dlq_size(kafka, 3))
    await support.stop_consumer(consumer, task)

    async with db.sessions() as session:
        seqs = (
            (await session.execute(select(support.applied.c.seq).order_by(support.applied.c.id)))
            .scalars()
            .all()
        )
        statuses = dict(
            (
                await session.execute(select(support.tables.inbox.c.status, support.tables.inbox.c.event_id))
            ).all()
        )
    assert seqs == [0, 1, 3, 4, 5]
    assert "dead-lettered" in statuses
    dead = [record async for record in replay_topic(kafka, support.TOPIC + ".dlq")]
    reasons = [dict(r.headers)["tsunagu-dlq-reason"] for r in dead]
    assert reasons == [b"ValueError", b"MalformedEnvelope", b"UnknownEventVersion"]
    assert dict(dead[0].headers)["tsunagu-dlq-attempts"] == b"3"
    assert dead[0].envelope().data["seq"] == 2


async def _dlq_size(kafka: KafkaSettings, size: int) -> bool:
    return len([r async for r in replay_topic(kafka, support.TOPIC + ".dlq")]) >= size


async def test_g_broker_killed_while_events_wait_nothing_is_lost_and_the_relay_resumes(
    db: Database, outbox: Outbox, kafka: KafkaSettings, broker
):
    await support.bump(db, outbox, "k", 0)
    assert await publish_all(db, outbox, kafka) == 1
    broker.kill()  # SIGKILL; the memory engine forgets everything it held
    for seq in range(1, 11):
        await support.bump(db, outbox, "k", seq)

    impatient = kafka.model_copy(update={"request_timeout_ms": 2000})
    producer = make_producer(impatient, "test-relay-outage")
    relay = OutboxRelay(db, outbox, producer, poll_interval_s=0.05)
    running = asyncio.create_task(_start_and_run(producer, relay))
    restarted = type(broker)(port=broker.port, log_path=broker.log_path)
    try:
        await asyncio.sleep(3)  # the relay keeps failing; nothing may be marked published
        assert await unpublished(db) == 10

        restarted.start()
        await ensure_topics(kafka, {support.TOPIC: 3})

        await support.wait_until(lambda: _drained(db), timeout_s=60)
    finally:
        await _stop_relay(relay, running, producer)
    try:
        seqs = [event.data["seq"] for event in await topic_records(kafka)]
    finally:
        restarted.stop()
    assert sorted(seqs) == list(range(1, 11)) and seqs == sorted(seqs)  # all, once each, in order


async def _start_and_run(producer, relay: OutboxRelay) -> None:  # type: ignore[no-untyped-def]
    while True:
        try:
            await producer.start()
            break
        except Exception:
            await asyncio.sleep(0.5)
    await relay.run()


async def test_published_rows_are_purged_after_retention_and_pending_ones_never(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    for seq in range(6):
        await support.bump(db, outbox, "k", seq)
    await publish_all(db, outbox, kafka)
    await support.bump(db, outbox, "k", 6)  # still pending
    table = support.tables.outbox
    async with db.transaction() as session:
        await session.execute(
            update(table).where(table.c.seq <= 3).values(published_at=datetime.now(UTC) - timedelta(days=8))
        )
    relay = OutboxRelay(db, outbox, producer=None)
    assert await relay.purge_published(timedelta(days=7)) == 3
    assert await support.count(db, table) == 4
    assert await unpublished(db) == 1


async def test_commits_made_while_the_relay_lingers_are_published_in_one_batch(
    db: Database, outbox: Outbox, kafka: KafkaSettings
):
    """A commit wakes the relay, which lingers so that the commits right behind it share the
    batch: one relay transaction for all of them (its UPDATE stamps one published_at)."""
    await publish_all(db, outbox, kafka)  # nothing pending from other tests
    producer = make_producer(kafka, "test-relay-linger")
    await producer.start()
    relay = OutboxRelay(db, outbox, producer, poll_interval_s=5.0, linger_s=1.0)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)  # the relay found nothing and waits for a commit
        for seq in range(3):
            await support.bump(db, outbox, "linger", seq)

        await support.wait_until(lambda: _drained(db), timeout_s=30)
    finally:
        await _stop_relay(relay, running, producer)
    table = support.tables.outbox
    async with db.sessions() as session:
        stamps = (
            (
                await session.execute(
                    select(table.c.published_at)
                    .where(table.c.partition_key == "linger")
                    .order_by(table.c.seq)
                )
            )
            .scalars()
            .all()
        )
    assert len(stamps) == 3 and len(set(stamps)) == 1


async def test_the_relay_plans_its_update_for_each_batch(db: Database, outbox: Outbox, kafka: KafkaSettings):
    """The relay marks what it sent with ``seq = ANY($2)``. From the sixth execution PostgreSQL
    may keep a generic plan of that UPDATE; one made while the outbox was small scanned the whole
    table on every later batch (a batch's cost grew with every event kept: 1.4 ms at 16,000
    rows). The relay's transaction has each batch planned for its own array instead."""
    await publish_all(db, outbox, kafka)
    single = Database(db.url, pool_size=1)  # one connection: the relay's statements are on it
    producer = make_producer(kafka, "test-relay-plans")
    await producer.start()
    try:
        relay = OutboxRelay(single, outbox, producer)
        for seq in range(10):
            await support.bump(single, outbox, "plans", seq)
            assert await relay.publish_batch() == 1
        assert single.direct is not None
        async with single.direct.transaction() as connection:
            plans = await connection.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'UPDATE %published_at%'"
            )
    finally:
        await producer.stop()
        await single.dispose()
    assert [(row["generic_plans"], row["custom_plans"]) for row in plans] == [(0, 10)]
