"""Effective consent answered from memory (domain/effective_cache.py): the rule applied to cached
rows, a load overtaken by a change is not kept, and — on PostgreSQL — a decision recorded by one
consent process is seen at once by another that had the person in memory (NOTIFY), while a lost
listener makes a process answer from the database until it listens again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.consent.conftest import HOSPITAL_A, ConsentHarness
from tests.fixtures.infra import PG_ADMIN_DSN
from tsunagu.consent.domain.effective_cache import EffectiveCache, ItemRow, in_force
from tsunagu.consent.store.changes import CHANNEL
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ALLERGY = "health.allergy"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _row(value: str, *, days: int = 0, until_days: int = 365, superseded_days: int | None = None) -> ItemRow:
    return ItemRow(
        recipient="rp",
        purpose="treatment",
        item=ALLERGY,
        value=value,
        effective_from=T0 + timedelta(days=days),
        valid_until=T0 + timedelta(days=until_days),
        superseded_at=None if superseded_days is None else T0 + timedelta(days=superseded_days),
    )


def test_in_force_keeps_the_validity_window_and_supersession():
    rows = [_row("allow", days=1, superseded_days=10), _row("deny", days=20, until_days=30)]
    at = {
        day: in_force(rows, "rp", "treatment", [ALLERGY], T0 + timedelta(days=day))
        for day in (0, 5, 10, 25, 30)
    }
    assert at == {0: [], 5: [(ALLERGY, "allow")], 10: [], 25: [(ALLERGY, "deny")], 30: []}
    assert in_force(rows, "other-rp", "treatment", [ALLERGY], T0 + timedelta(days=5)) == []
    assert in_force(rows, "rp", "care", [ALLERGY], T0 + timedelta(days=5)) == []


async def test_a_load_overtaken_by_a_change_is_not_kept():
    cache = EffectiveCache(max_people=10)
    cache.set_live(True)
    loads = 0

    async def load() -> list[ItemRow]:
        nonlocal loads
        loads += 1
        if loads == 1:
            cache.changed("u1")  # a decision commits while the first load reads
        return [_row("allow")]

    await cache.rows("u1", load)
    await cache.rows("u1", load)  # not kept: loaded again
    await cache.rows("u1", load)  # kept by the second load
    assert loads == 2 and cache.hits == 1


async def test_nothing_is_kept_or_served_while_not_live_and_liveness_drops_everything():
    cache = EffectiveCache(max_people=2)
    calls = 0

    async def load() -> list[ItemRow]:
        nonlocal calls
        calls += 1
        return []

    for _ in range(3):
        await cache.rows("u1", load)
    assert calls == 3  # not live: every answer from the database
    cache.set_live(True)
    for user in ("u1", "u2", "u3", "u1"):
        await cache.rows(user, load)
    assert calls == 7  # u1 was evicted (two people at most) and loaded again
    await cache.rows("u1", load)
    assert calls == 7
    cache.set_live(False)
    cache.set_live(True)
    await cache.rows("u1", load)
    assert calls == 8


@pytest.fixture
async def pair(make_consent) -> AsyncIterator[tuple[ConsentHarness, ConsentHarness]]:  # type: ignore[no-untyped-def]
    """Two consent processes on one PostgreSQL database, both listening."""
    async with (
        scratch_database("tsunagu_consent_cache") as url,
        make_consent(url) as first,
        make_consent(url) as second,
    ):
        await _until(lambda: _cache(first).live and _cache(second).live)
        yield first, second


async def _until(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _grant(first: ConsentHarness, citizen: Enrolled) -> dict[str, Any]:
    """The citizen allows the allergy item for hospital A, recorded by the first process."""
    await first.ask(citizen.user_number, HOSPITAL_A, {ALLERGY: True})
    pending = [p for p in await wallet.fetch_requests(first.client, citizen) if p["recipient"] == HOSPITAL_A]
    return await wallet.decide(first.client, citizen, pending[-1], {ALLERGY: True})


def _cache(harness: ConsentHarness) -> EffectiveCache:
    return harness.app.state.runtime.resources.queries.context.effective  # type: ignore[no-any-return]


async def test_a_decision_recorded_by_one_process_is_seen_at_once_by_another(
    pair: tuple[ConsentHarness, ConsentHarness], citizen: Enrolled
):
    first, second = pair
    user = citizen.user_number
    before = _cache(second).lookup(user)[1]
    granted = await _grant(first, citizen)
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}  # at once
    # The second process's NOTIFY may land after that read (which then keeps nothing); once it
    # has, what the second process reads stays in memory.
    await _until(lambda: _cache(second).lookup(user)[1].version != before.version)
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}
    hits = _cache(second).hits
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}
    assert _cache(second).hits == hits + 1  # the second process answers from memory now

    await wallet.withdraw(first.client, citizen, granted["decision_id"])
    started = time.monotonic()
    while await second.effective(user, HOSPITAL_A, [ALLERGY]) != {ALLERGY: "deny"}:
        assert time.monotonic() - started < 2.0, "the other process still allows after 2 s"
        await asyncio.sleep(0.01)


async def test_a_lost_listener_sends_every_check_to_the_database_until_it_listens_again(
    pair: tuple[ConsentHarness, ConsentHarness], citizen: Enrolled
):
    first, second = pair
    user = citizen.user_number
    granted = await _grant(first, citizen)
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}

    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        database = first.app.state.runtime.db.url.rsplit("/", 1)[1]
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query = $2",
            database,
            f'LISTEN "{CHANNEL}"',
        )
    finally:
        await admin.close()
    assert killed == 2  # both processes' listeners
    await _until(lambda: not _cache(second).live)
    await wallet.withdraw(first.client, citizen, granted["decision_id"])
    misses = _cache(second).misses
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "deny"}
    assert _cache(second).misses == misses + 1  # from the database, not memory
    await _until(lambda: _cache(second).live)  # listening again: the cache serves once more
    assert await second.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "deny"}
