"""Push on the real stack: a move in the J-LIS sandbox reaches a consenting bank's webhook (signed,
verified with the broker's JWKS, the bank's own sub) and not a non-consenting shop; a provider's
change is pushed; a failing webhook is retried, goes dead, and is redelivered through the API; the
order per citizen holds under failures; a withdrawal between acceptance and sending stops the
delivery; bad input is refused with nothing written."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx

from tests.broker.conftest import TREATMENT, BrokerHarness, Party
from tests.broker.push_support import (
    Receiver,
    citizen_with_card,
    deliveries,
    event_about,
    serve_receiver,
    subscribe,
    until,
)
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ADDRESS = "resident.address"
ADDRESS_SCHEMA = {
    "type": "object",
    "properties": {"address": {"type": "string", "maxLength": 400}},
    "required": ["address"],
}
KYC = {"code": "kyc", "ja": "本人確認のため", "en": "Customer due diligence"}
PROBLEM = "urn:tsunagu:problem:"


MEDICATION = "health.medication"  # consent knows a fixed set of items; each test has its own provider
MEDICATION_SCHEMA = {
    "type": "object",
    "properties": {
        "drugs": {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 50},
        "recorded_on": {"type": "string"},
    },
    "required": ["drugs"],
}


async def _provider_item(broker: BrokerHarness, citizen: Enrolled) -> tuple[Party, str, str]:
    """A records provider (scope broker:provide), its own item, and its sub for the citizen."""
    records, _, endpoint = await broker.provider(f"records-{secrets.token_hex(2)}")
    item = MEDICATION
    await broker.define_item(
        item, [{"client_id": records.client_id, "endpoint": endpoint}], schema=MEDICATION_SCHEMA
    )
    return records, item, await broker.sub_of(records, citizen)


async def _subscriber(
    broker: BrokerHarness,
    name: str,
    citizen: Enrolled,
    item: str,
    *,
    allow: bool,
    purpose: dict[str, str] = TREATMENT,
) -> tuple[Party, Receiver, dict[str, Any]]:
    party = await broker.party(name, "broker:subscribe")
    decision = await broker.decide(citizen, party, {item: allow}, purpose=purpose)
    receiver = await serve_receiver(broker, party)
    response = await subscribe(broker, party, [item], purpose["code"], receiver.url)
    assert response.status_code == 201, response.text
    return party, receiver, decision


async def _change(broker: BrokerHarness, provider: Party, sub: str, item: str, value: Any) -> httpx.Response:
    return await broker.broker.post(
        "/v1/changes", json={"sub": sub, "item": item, "value": value}, headers=provider.bearer
    )


def _reading(n: int) -> dict[str, Any]:
    return {"drugs": [f"drug-{n}"], "recorded_on": "2026-11-24"}


async def test_a_move_is_pushed_to_a_consenting_bank_and_not_to_a_non_consenting_shop(broker: BrokerHarness):
    citizen, person_id = await citizen_with_card(broker.stack, f"引越 太郎{secrets.token_hex(2)}")
    await broker.define_item(
        ADDRESS,
        [{"client_id": "jlis-sync", "endpoint": "internal:jlis-sync"}],
        schema=ADDRESS_SCHEMA,
        sensitivity="normal",
    )
    bank, bank_hook, allowed = await _subscriber(broker, "bank", citizen, ADDRESS, allow=True, purpose=KYC)
    _, shop_hook, _ = await _subscriber(broker, "shop", citizen, ADDRESS, allow=False, purpose=KYC)

    new_address = "北海道札幌市中央区北1条西2丁目"
    async with httpx.AsyncClient(base_url=broker.stack.jlis_url, timeout=30) as jlis:
        moved = await jlis.post(f"/persons/{person_id}/move", json={"address": new_address})
        assert moved.status_code == 200, moved.text

    await until(lambda: bool(bank_hook.received), "the bank's webhook", timeout_s=45)
    push = bank_hook.received[0]
    assert push["sub"] == await broker.sub_of(bank, citizen)  # the bank's own pairwise sub
    assert push["item"] == ADDRESS and push["value"] == {"address": new_address}
    assert push["purpose"] == "kyc" and push["sequence"] == 1 and push["jti"].startswith("dl_")
    assert citizen.user_number not in json.dumps(push)
    await asyncio.sleep(1.0)
    assert shop_hook.attempts == []  # the shop never hears of it

    log = await broker.exchange_log(citizen)
    pushes = [e for e in log if e["kind"] == "push"]
    assert [(e["consumer"], e["outcome"]) for e in pushes] == [(bank.client_id, "completed")]
    assert pushes[0]["providers"] == ["jlis-sync"] and pushes[0]["consent"] == {
        ADDRESS: allowed["decision_id"]
    }
    assert new_address not in json.dumps(log)
    sent = await deliveries(broker, bank)
    assert [d["state"] for d in sent] == ["delivered"] and sent[0]["sub"] == push["sub"]


async def test_a_provider_change_is_pushed(broker: BrokerHarness, citizen: Enrolled):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)

    extra = {**_reading(1), "note": "beyond the schema"}
    accepted = await _change(broker, records, records_sub, item, extra)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["change_id"].startswith("ch_")

    await until(lambda: bool(hook.received), "the hospital's webhook")
    push = hook.received[0]
    assert push["value"] == _reading(1)  # reduced to the item's schema
    assert push["sub"] == await broker.sub_of(hospital, citizen) != records_sub
    assert push["change_id"] == accepted.json()["change_id"]
    listed = await broker.broker.get("/v1/subscriptions", headers=hospital.bearer)
    assert [s["items"] for s in listed.json()["subscriptions"]] == [[item]]


async def test_a_failing_webhook_is_retried_then_dead_then_redelivered(
    broker: BrokerHarness, citizen: Enrolled
):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)
    hook.status = 503

    assert (await _change(broker, records, records_sub, item, _reading(1))).status_code == 202
    await until(lambda: len(hook.attempts) >= 3, "three attempts")

    async def dead() -> bool:
        return bool(await deliveries(broker, hospital, "dead"))

    await until(dead, "the dead-letter store")
    [letter] = await deliveries(broker, hospital, "dead")
    assert letter["attempts"] == 3 and letter["last_error"] == "status 503" and letter["item"] == item
    await asyncio.sleep(0.5)
    assert len(hook.attempts) == 3 and hook.received == []  # bounded: no fourth attempt
    event = await event_about(
        broker.stack,
        "tsunagu.broker.delivery",
        "tsunagu.broker.delivery.dead",
        "delivery_id",
        letter["delivery_id"],
    )
    assert event["data"]["attempts"] == 3 and event["data"]["last_error"] == "status 503"
    assert event["data"]["subscriber"] == hospital.client_id and "drug-1" not in json.dumps(event)

    # Another party cannot redeliver it; an unknown id is 404 too.
    other = await broker.party("other", "broker:subscribe")
    refused = await broker.broker.post(
        f"/v1/deliveries/{letter['delivery_id']}/redeliver", headers=other.bearer
    )
    assert refused.status_code == 404 and refused.json()["type"] == PROBLEM + "unknown-delivery"

    hook.status = 200
    again = await broker.broker.post(
        f"/v1/deliveries/{letter['delivery_id']}/redeliver", headers=hospital.bearer
    )
    assert again.status_code == 202, again.text
    await until(lambda: bool(hook.received), "the redelivery")
    assert hook.received[0]["jti"] == letter["delivery_id"] and hook.received[0]["value"] == _reading(1)

    async def delivered() -> bool:
        return [d["state"] for d in await deliveries(broker, hospital)] == ["delivered"]

    # the webhook has the push before the broker has the webhook's answer and records it
    await until(delivered, "the redelivery recorded")
    outcomes = [(e["kind"], e["outcome"], e["reason"]) for e in reversed(await broker.exchange_log(citizen))]
    assert outcomes == [("push", "failed", "delivery-dead"), ("push", "completed", None)]
    # redelivering a delivered one is refused
    twice = await broker.broker.post(
        f"/v1/deliveries/{letter['delivery_id']}/redeliver", headers=hospital.bearer
    )
    assert twice.status_code == 404


async def test_order_per_citizen_is_kept_under_failures(broker: BrokerHarness, citizen: Enrolled):
    records, item, records_sub = await _provider_item(broker, citizen)
    _, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)
    hook.fail_first = 2  # the first change fails twice, then everything succeeds
    for n in range(1, 5):
        assert (await _change(broker, records, records_sub, item, _reading(n))).status_code == 202

    await until(lambda: len(hook.received) == 4, "four pushes")
    assert [p["sequence"] for p in hook.received] == [1, 2, 3, 4]
    assert [p["value"] for p in hook.received] == [_reading(n) for n in range(1, 5)]
    # no change was even attempted before the one before it had succeeded
    assert [p["sequence"] for p in hook.attempts] == [1, 1, 1, 2, 3, 4]


async def test_a_withdrawal_between_accept_and_send_stops_the_delivery(
    broker: BrokerHarness, citizen: Enrolled
):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, allowed = await _subscriber(broker, "hospital", citizen, item, allow=True)
    hook.hold, hook.status = asyncio.Event(), 503

    assert (await _change(broker, records, records_sub, item, _reading(1))).status_code == 202
    await asyncio.wait_for(hook.arrived.wait(), 30)  # the first attempt is in flight
    await wallet.withdraw(broker.consent, citizen, allowed["decision_id"])
    await asyncio.sleep(0.7)  # the broker's consent view has it (or it asks consent)
    hook.hold.set()  # the first attempt fails; the next one re-checks consent

    async def cancelled() -> bool:
        return [d["state"] for d in await deliveries(broker, hospital)] == ["cancelled"]

    await until(cancelled, "the cancellation")
    [stopped] = await deliveries(broker, hospital)
    assert stopped["last_error"] == "consent-required"
    # the attempt in flight (and at most one retry started before the withdrawal was seen)
    assert hook.received == [] and len(hook.attempts) <= 2
    pushes = [(e["kind"], e["outcome"], e["reason"]) for e in await broker.exchange_log(citizen)]
    assert pushes == [("push", "denied", "consent-required")]


async def test_unsubscribing_stops_what_was_not_sent(broker: BrokerHarness, citizen: Enrolled):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)
    hook.hold, hook.status = asyncio.Event(), 503
    for n in (1, 2):
        assert (await _change(broker, records, records_sub, item, _reading(n))).status_code == 202
    await asyncio.wait_for(hook.arrived.wait(), 30)
    [subscription] = (await broker.broker.get("/v1/subscriptions", headers=hospital.bearer)).json()[
        "subscriptions"
    ]
    gone = await broker.broker.delete(
        f"/v1/subscriptions/{subscription['subscription_id']}", headers=hospital.bearer
    )
    assert gone.status_code == 204
    hook.hold.set()
    await asyncio.sleep(1.0)
    assert {d["state"] for d in await deliveries(broker, hospital)} == {"cancelled"}
    assert hook.received == [] and len(hook.attempts) == 1
    again = await broker.broker.delete(
        f"/v1/subscriptions/{subscription['subscription_id']}", headers=hospital.bearer
    )
    assert again.status_code == 404 and again.json()["type"] == PROBLEM + "unknown-subscription"


async def test_bad_input_is_refused_and_nothing_is_written(broker: BrokerHarness, citizen: Enrolled):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)
    stranger = await broker.party("stranger", "broker:provide")
    subscriptions_before = (await broker.broker.get("/v1/subscriptions", headers=hospital.bearer)).json()

    async def change(party: Party, body: dict[str, Any]) -> dict[str, Any]:
        response = await broker.broker.post("/v1/changes", json=body, headers=party.bearer)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return {"status": response.status_code, "type": response.json()["type"].removeprefix(PROBLEM)}

    base = {"sub": records_sub, "item": item, "value": _reading(1)}
    assert await change(records, {**base, "item": "health.nothing_here"}) == {
        "status": 400,
        "type": "unknown-item",
    }
    stranger_sub = await broker.sub_of(stranger, citizen)
    assert await change(stranger, {**base, "sub": stranger_sub}) == {
        "status": 403,
        "type": "not-item-provider",
    }
    invalid = {**base, "value": {"drugs": "not a list"}}
    assert await change(records, invalid) == {"status": 400, "type": "invalid-change"}
    assert await change(records, {**base, "sub": "no-such-sub"}) == {"status": 404, "type": "unknown-subject"}
    huge = {**base, "value": {"drugs": ["x" * 90] * 50, "pad": "y" * 70_000}}
    assert await change(records, huge) == {"status": 400, "type": "invalid-change"}
    assert await change(records, {**base, "extra": 1}) == {"status": 422, "type": "validation-failed"}
    assert await change(hospital, base) == {"status": 403, "type": "insufficient-scope"}

    async def subscription(body: dict[str, Any], party: Party = hospital) -> dict[str, Any]:
        response = await broker.broker.post("/v1/subscriptions", json=body, headers=party.bearer)
        assert 400 <= response.status_code < 500, response.text
        return {"status": response.status_code, "type": response.json()["type"].removeprefix(PROBLEM)}

    good = {"items": [item], "purpose": "treatment", "url": hook.url}
    for url in (
        "http://hospital.example/hook",
        "ftp://127.0.0.1/hook",
        "https://user:pw@hospital.example/hook",
        "https://hospital.example/hook#x",
        "not a url",
        # addresses inside the platform's networks (the SSRF guard)
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/hook",
        "https://[fd00::5]/hook",
        "https://[::ffff:172.16.0.1]/hook",
    ):
        assert await subscription({**good, "url": url}) == {"status": 400, "type": "invalid-subscription"}, (
            url
        )
    assert await subscription({**good, "items": ["health.nothing_here"]}) == {
        "status": 400,
        "type": "unknown-item",
    }
    assert await subscription({**good, "purpose": "No Such Purpose"}) == {
        "status": 400,
        "type": "invalid-subscription",
    }
    assert (await subscription(good, records))["type"] == "insufficient-scope"

    await asyncio.sleep(0.5)
    assert hook.attempts == []
    assert await deliveries(broker, hospital) == []
    after = (await broker.broker.get("/v1/subscriptions", headers=hospital.bearer)).json()
    assert after == subscriptions_before
    bad_state = await broker.broker.get("/v1/deliveries", params={"state": "lost"}, headers=hospital.bearer)
    assert bad_state.status_code == 422
    unknown = await broker.broker.post("/v1/deliveries/dl_nothing/redeliver", headers=hospital.bearer)
    assert unknown.status_code == 404
