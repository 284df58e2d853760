"""Personal data exchange (pull) on the real stack: the allergy scenario end to end — hospital A
receives it, hospital B gets 403, A loses access right after the citizen withdraws — with the
exchange log and its events, and the provider's view of the signed request."""

from __future__ import annotations

import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer

from tests.broker.conftest import ALLERGY, BrokerHarness
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

RECORD = {"allergens": ["そば", "penicillin"], "recorded_on": "2026-04-01"}


async def _allergy_setup(broker: BrokerHarness, citizen: Enrolled):  # type: ignore[no-untyped-def]
    records, provider, endpoint = await broker.provider("records-ebetsu")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: RECORD}
    hospital_a = await broker.party("hospital-a")
    hospital_b = await broker.party("hospital-b")
    return records, provider, hospital_a, hospital_b


async def test_allergy_allowed_for_a_refused_for_b_withdrawn_for_a(broker: BrokerHarness, citizen: Enrolled):
    records, provider, hospital_a, hospital_b = await _allergy_setup(broker, citizen)
    allowed = await broker.decide(citizen, hospital_a, {ALLERGY: True})
    await broker.decide(citizen, hospital_b, {ALLERGY: False})
    sub_a, sub_b = await broker.sub_of(hospital_a, citizen), await broker.sub_of(hospital_b, citizen)
    assert sub_a != sub_b  # pairwise

    response = await broker.pull(hospital_a, sub_a, [ALLERGY])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"] == {ALLERGY: RECORD}
    assert (
        body["sub"] == sub_a and body["denied"] == [] and body["consent"] == {ALLERGY: allowed["decision_id"]}
    )
    # The provider saw a request about its own subject, naming the consumer, never A's sub.
    seen = provider.seen[-1]
    assert seen["sub"] == await broker.sub_of(records, citizen) and seen["consumer"] == hospital_a.client_id
    assert sub_a not in json.dumps(seen) and citizen.user_number not in json.dumps(seen)
    assert seen["jti"] == body["exchange_id"] and seen["items"] == [ALLERGY]

    refused = await broker.pull(hospital_b, sub_b, [ALLERGY])
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["type"] == "urn:tsunagu:problem:consent-required"
    assert problem["authorization_details"] == [
        {"type": "tsunagu_data_access", "items": [ALLERGY], "purpose": "treatment"}
    ]
    assert len(provider.seen) == 1  # nothing was fetched for B

    # Withdrawal: signed by the wallet; A is refused for every request from then on.
    await wallet.withdraw(broker.consent, citizen, allowed["decision_id"])
    started = time.monotonic()
    while True:
        again = await broker.pull(hospital_a, sub_a, [ALLERGY])
        if again.status_code == 403:
            break
        assert again.status_code == 200
        assert time.monotonic() - started < 5, "the withdrawal was not enforced"
        await asyncio.sleep(0.05)
    assert again.json()["type"] == "urn:tsunagu:problem:consent-required"

    log = await broker.exchange_log(citizen)
    outcomes = [(e["consumer"], e["outcome"]) for e in reversed(log)]
    assert outcomes[0] == (hospital_a.client_id, "completed")
    assert (hospital_b.client_id, "denied") in outcomes
    assert outcomes[-1] == (hospital_a.client_id, "denied")
    first = log[-1]
    assert first["released"] == [ALLERGY] and first["consent"] == {ALLERGY: allowed["decision_id"]}
    assert "allergens" not in json.dumps(log)  # values are never logged


async def test_exchange_events_reach_a_consumer(broker: BrokerHarness, citizen: Enrolled):
    _, _, hospital_a, _ = await _allergy_setup(broker, citizen)
    await broker.decide(citizen, hospital_a, {ALLERGY: True})
    sub_a = await broker.sub_of(hospital_a, citizen)
    consumer = AIOKafkaConsumer(
        "tsunagu.broker.exchange",
        bootstrap_servers=broker.stack.broker.bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        response = await broker.pull(hospital_a, sub_a, [ALLERGY])
        assert response.status_code == 200, response.text
        exchange_id = response.json()["exchange_id"]
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["data"].get("exchange_id") == exchange_id:
                        found = event
    finally:
        await consumer.stop()
    assert found is not None, "no broker.exchange.completed event"
    assert found["type"] == "tsunagu.broker.exchange.completed"
    assert found["data"]["consumer"] == hospital_a.client_id and found["data"]["released"] == [ALLERGY]
    assert "allergens" not in json.dumps(found) and sub_a not in json.dumps(found)
