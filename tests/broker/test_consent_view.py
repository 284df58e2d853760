"""The broker's consent view: consent's rule applied to decision events (deny wins, expiry,
supersession), answered from the view only while it is fresh, otherwise by consent itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.broker.conftest import ALLERGY, BrokerHarness
from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.broker.domain.consent_view import (
    DECISION_TOPIC,
    ConsentView,
    ViewChanges,
    evaluate,
    partition_of,
)
from tsunagu.broker.store import repository as store
from tsunagu.broker.store.models import metadata
from tsunagu.clients.consent import ConsentApi
from tsunagu.db import Database
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import Enrolled

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _decision(decision_id: str, items: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "user_number": "1111222233334444",
        "recipient": "hospital-a",
        "purpose_code": "treatment",
        "action": "decide",
        "items": items,
        "effective_from": T0,
        "valid_until": T0 + timedelta(days=30),
        "recorded_at": T0,
        "supersedes": None,
        "superseded_at": None,
        **overrides,
    }


def test_rule_deny_wins_expiry_supersession_and_purpose():
    allow = _decision("d1", {ALLERGY: "allow", "resident.name": "allow"})
    deny = _decision("d2", {"resident.name": "deny"})
    other_purpose = _decision("d3", {"health.medication": "allow"}, purpose_code="marketing")
    later = _decision("d4", {"resident.address": "allow"}, effective_from=T0 + timedelta(days=5))
    superseded = _decision("d5", {"health.medication": "allow"}, superseded_at=T0 + timedelta(days=2))
    withdrawal = _decision("d6", {"resident.sex": "allow"}, action="withdraw")
    rows = [allow, deny, other_purpose, later, superseded, withdrawal]
    items = [ALLERGY, "resident.name", "resident.address", "health.medication", "resident.sex"]
    assert evaluate(rows, "treatment", items, T0 + timedelta(days=1)) == {
        ALLERGY: "d1",
        "health.medication": "d5",
    }
    assert evaluate(rows, "treatment", items, T0 + timedelta(days=6)) == {
        ALLERGY: "d1",
        "resident.address": "d4",
    }
    assert evaluate(rows, "treatment", items, T0 + timedelta(days=30)) == {}  # expired
    assert evaluate(rows, "marketing", items, T0 + timedelta(days=1)) == {"health.medication": "d3"}


def test_partition_matches_kafka_default_partitioner():
    # aiokafka's DefaultPartitioner on the same key bytes (what the outbox relay relies on).
    from aiokafka.partitioner import DefaultPartitioner

    key = "1234567890123456"
    partitions = list(range(3))
    assert partition_of(key, 3) == DefaultPartitioner()(key.encode(), partitions, partitions)


async def test_stale_view_asks_consent_and_fresh_view_answers_itself(
    broker: BrokerHarness, citizen: Enrolled
):
    hospital = await broker.party("hospital-view")
    decided = await broker.decide(citizen, hospital, {ALLERGY: True, "resident.name": False})
    credentials = broker.stack.config.state_dir / "credentials"
    issuer = ServiceTokenIssuer("broker", load_private_key(credentials / "broker.key.pem"))
    consent = ConsentApi("consent", broker.stack.urls["consent"], issuer)
    sources: list[str] = []
    changes = ViewChanges()
    clock = {"now": 1000.0}
    caught_up: dict[int, float] = {}
    async with scratch_database("tsunagu_broker_view") as url:
        db = Database(url)
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        view = ConsentView(
            db,
            consent,
            max_age_s=0.5,
            freshness=lambda topic, partition: caught_up.get(partition) if topic == DECISION_TOPIC else None,
            partitions=lambda topic: 3,
            monotonic=lambda: clock["now"],
            answered=sources.append,
            changes=changes,
        )
        now = datetime.now(UTC)
        # The view is empty and not fresh: consent answers (the allow is real).
        verdict = await view.check(
            citizen.user_number, hospital.client_id, "treatment", [ALLERGY, "resident.name"], now
        )
        assert (sorted(verdict.allowed), verdict.denied, verdict.source) == (
            [ALLERGY],
            ["resident.name"],
            "consent",
        )
        # Fresh but empty view: it answers by itself — deny, since it has not seen the decision.
        caught_up[partition_of(citizen.user_number, 3)] = clock["now"]
        verdict = await view.check(citizen.user_number, hospital.client_id, "treatment", [ALLERGY], now)
        assert (verdict.allowed, verdict.source) == ({}, "view")
        # Once the decision is in the view, it allows with the decision's id.
        async with db.transaction() as session:
            await store.add_decision(
                session,
                _decision(
                    decided["decision_id"],
                    {ALLERGY: "allow", "resident.name": "deny"},
                    user_number=citizen.user_number,
                    recipient=hospital.client_id,
                    effective_from=now - timedelta(minutes=1),
                    valid_until=now + timedelta(days=1),
                ),
            )
        verdict = await view.check(citizen.user_number, hospital.client_id, "treatment", [ALLERGY], now)
        assert (verdict.allowed, verdict.source) == ({}, "view")  # cached rows: nothing applied yet
        changes.changed(citizen.user_number)  # what the consumer does once the decision committed
        verdict = await view.check(citizen.user_number, hospital.client_id, "treatment", [ALLERGY], now)
        assert (verdict.allowed, verdict.source) == ({ALLERGY: decided["decision_id"]}, "view")
        # Older than max_age: consent is asked again.
        clock["now"] += 0.6
        verdict = await view.check(citizen.user_number, hospital.client_id, "treatment", [ALLERGY], now)
        assert (verdict.allowed, verdict.source) == ({ALLERGY: decided["decision_id"]}, "consent")
        await db.engine.dispose()
    await consent.aclose()
    assert sources == ["consent", "view", "view", "view", "consent"]


async def test_the_running_broker_answers_from_its_view(broker: BrokerHarness, citizen: Enrolled):
    records, provider, endpoint = await broker.provider("records-view")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: {"allergens": ["卵"]}}
    hospital = await broker.party("hospital-view-2")
    await broker.decide(citizen, hospital, {ALLERGY: True})
    sub = await broker.sub_of(hospital, citizen)

    async def checks() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=broker.broker_url) as client:
            text = (await client.get("/metrics")).text
        found = re.findall(r'tsunagu_broker_consent_checks_total\{source="(\w+)"\} ([0-9.e+]+)', text)
        return {source: float(value) for source, value in found}

    before = await checks()
    for _ in range(20):
        response = await broker.pull(hospital, sub, [ALLERGY])
        assert response.status_code in (200, 403), response.text
    after = await checks()
    assert after.get("view", 0) - before.get("view", 0) > 0, (before, after)
