"""Signed decisions end to end on the real stack: the allergy example, withdrawal, deny wins,
expiry, receipts, events, the wallet's grants and history."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.consent.conftest import HOSPITAL_A, HOSPITAL_B, ConsentHarness, service_auth
from tsunagu.consent.domain import jws_rfc7515
from tsunagu.consent.domain.jcs_rfc8785 import is_canonical, sha256_hex
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import Enrolled, WalletError
from tsunagu.wallet import consent as wallet

ALLERGY = "health.allergy"


def _receipt_claims(receipt: str, stack_signer: str, stack) -> dict:  # type: ignore[no-untyped-def]
    """Check the receipt with the signer's published receipt key; return its claims."""
    header_segment, payload_segment, signature = receipt.split(".")
    header = json.loads(jws_rfc7515.b64url_decode(header_segment))
    keys = httpx.get(
        f"{stack_signer}/v1/keys/{header['kid']}", auth=service_auth(stack, "operator", "signer"), timeout=10
    ).json()
    payload = jws_rfc7515.b64url_decode(payload_segment)
    assert is_canonical(payload)
    jws_rfc7515.verify_with_key(
        load_pem_public_key(keys["public_key_pem"].encode()),
        header["alg"],
        f"{header_segment}.{payload_segment}".encode(),
        jws_rfc7515.b64url_decode(signature),
    )
    assert keys["purpose"] == "receipt"
    return dict(json.loads(payload))


async def test_allergy_allowed_for_hospital_a_refused_for_hospital_b(
    consent: ConsentHarness, citizen: Enrolled
):
    user = citizen.user_number
    asked_a = await consent.ask(user, HOSPITAL_A, {ALLERGY: True, "resident.name": False})
    asked_b = await consent.ask(user, HOSPITAL_B, {ALLERGY: True})
    assert asked_a["notice"]["items"][0]["special_care"] is True

    pending = await wallet.fetch_requests(consent.client, citizen)
    assert [p["request_id"] for p in pending] == [asked_a["request_id"], asked_b["request_id"]]
    by_recipient = {p["recipient"]: p for p in pending}

    recorded_a = await wallet.decide(consent.client, citizen, by_recipient[HOSPITAL_A], {ALLERGY: True})
    recorded_b = await wallet.decide(consent.client, citizen, by_recipient[HOSPITAL_B], {ALLERGY: False})
    assert recorded_a["event"] == "partially-given"  # allergy yes, name no
    assert recorded_b["event"] == "refused"
    assert (recorded_a["sequence"], recorded_b["sequence"]) == (1, 2)

    assert await consent.effective(user, HOSPITAL_A, [ALLERGY, "resident.name"]) == {
        ALLERGY: "allow",
        "resident.name": "deny",
    }
    assert await consent.effective(user, HOSPITAL_B, [ALLERGY]) == {ALLERGY: "deny"}
    # Another purpose, another recipient, an item never asked: deny.
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY], purpose="marketing") == {ALLERGY: "deny"}
    assert await consent.effective(user, "hospital-c", [ALLERGY]) == {ALLERGY: "deny"}
    single = await consent.client.post(
        "/internal/v1/effective/check",
        json={"user_number": user, "recipient": HOSPITAL_A, "item": ALLERGY, "purpose": "treatment"},
        auth=consent.auth("broker"),
    )
    assert single.json() == {"decision": "allow"}
    # The bulk form: any person, recipient, purpose and item, answered in order.
    checks = [
        {"user_number": user, "recipient": HOSPITAL_A, "item": ALLERGY, "purpose": "treatment"},
        {"user_number": user, "recipient": HOSPITAL_B, "item": ALLERGY, "purpose": "treatment"},
        {"user_number": user, "recipient": HOSPITAL_A, "item": "resident.name", "purpose": "treatment"},
        {"user_number": "0000000000000000", "recipient": HOSPITAL_A, "item": ALLERGY, "purpose": "treatment"},
        {"user_number": user, "recipient": HOSPITAL_A, "item": "no.such.item", "purpose": "treatment"},
    ]
    bulk = await consent.client.post(
        "/internal/v1/effective/batch", json={"checks": checks}, auth=consent.auth("broker")
    )
    assert bulk.json() == {"decisions": ["allow", "deny", "deny", "deny", "deny"]}, bulk.text

    # The receipt: the platform's receipt key countersigned this decision's hash and sequence.
    stored = {row["id"]: row for row in await consent.rows("decision")}
    claims = _receipt_claims(recorded_a["receipt"], consent.stack.urls["signer"], consent.stack)
    assert claims["decision_sha256"] == sha256_hex(stored[recorded_a["decision_id"]]["jws"].encode())
    assert claims["sequence"] == 1 and claims["user_number"] == user

    # Both requests are answered; nothing is pending any more.
    assert await wallet.fetch_requests(consent.client, citizen) == []

    # Events: the full signed statement and the receipt, keyed by the user number.
    events = [e for e in await consent.events() if e["type"] == "tsunagu.consent.decision.recorded"]
    assert [e["data"]["decision_id"] for e in events] == [
        recorded_a["decision_id"],
        recorded_b["decision_id"],
    ]
    assert all(e["partitionkey"] == user for e in events)
    assert events[0]["data"]["statement_jws"] == stored[recorded_a["decision_id"]]["jws"]
    assert events[0]["data"]["receipt_jws"] == recorded_a["receipt"]
    created = [e for e in await consent.events() if e["type"] == "tsunagu.consent.request.created"]
    assert len(created) == 2

    # The citizen's view: grants grouped by recipient, the full history with the chain.
    grants = await wallet.fetch_grants(consent.client, citizen)
    by = {g["recipient"]: g for g in grants["recipients"]}
    assert by[HOSPITAL_A]["purposes"] == {"treatment": {ALLERGY: "allow", "resident.name": "deny"}}
    assert by[HOSPITAL_A]["name_ja"] == "A病院"
    assert by[HOSPITAL_B]["purposes"] == {"treatment": {ALLERGY: "deny"}}
    history = (await wallet.fetch_history(consent.client, citizen))["decisions"]
    assert [h["event"] for h in history] == ["partially-given", "refused"]


async def test_withdrawal_takes_effect_at_once_and_a_new_grant_counts_again(
    consent: ConsentHarness, citizen: Enrolled
):
    user = citizen.user_number
    await consent.ask(user, HOSPITAL_A, {ALLERGY: True})
    (request,) = await wallet.fetch_requests(consent.client, citizen)
    granted = await wallet.decide(consent.client, citizen, request, {ALLERGY: True})
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}
    before = datetime.now(UTC)

    withdrawn = await wallet.withdraw(consent.client, citizen, granted["decision_id"])
    assert withdrawn["event"] == "withdrawn"
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "deny"}
    # Before the withdrawal was recorded, the grant counted (history stays answerable).
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY], at=before) == {ALLERGY: "allow"}
    history = (await wallet.fetch_history(consent.client, citizen))["decisions"]
    assert history[0]["superseded_by"] == withdrawn["decision_id"]
    assert history[1]["supersedes"] == granted["decision_id"]
    assert (await wallet.fetch_grants(consent.client, citizen))["recipients"] == []
    # Withdrawing twice: the decision is already superseded.
    try:
        await wallet.withdraw(consent.client, citizen, granted["decision_id"])
    except WalletError as error:
        assert error.status == 409 and error.problem["type"].endswith("already-superseded")
    else:
        raise AssertionError("a second withdrawal was accepted")

    # The records were never edited: one row per decision, the grant's row as it was.
    rows = await consent.rows("decision")
    assert [r["action"] for r in rows] == ["decide", "withdraw"]

    # Asked again, the citizen may grant again (the withdrawal adds no refusal of its own).
    await consent.ask(user, HOSPITAL_A, {ALLERGY: True})
    (again,) = await wallet.fetch_requests(consent.client, citizen)
    await wallet.decide(consent.client, citizen, again, {ALLERGY: True})
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY]) == {ALLERGY: "allow"}


async def test_deny_wins_and_a_decision_stops_counting_when_it_expires(
    consent: ConsentHarness, citizen: Enrolled
):
    user = citizen.user_number
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    await consent.ask(user, HOSPITAL_A, {ALLERGY: True, "resident.address": False}, until=until)
    (first,) = await wallet.fetch_requests(consent.client, citizen)
    await wallet.decide(consent.client, citizen, first, {ALLERGY: True, "resident.address": True})
    await consent.ask(user, HOSPITAL_A, {ALLERGY: True})
    (second,) = await wallet.fetch_requests(consent.client, citizen)
    # Answered without superseding the first (both stay in force): the refusal wins.
    statement = wallet.decision_statement(second, {ALLERGY: False}, previous=second["previous"])
    await wallet.submit(consent.client, wallet.sign_statement(citizen.signing, statement))
    assert await consent.effective(user, HOSPITAL_A, [ALLERGY, "resident.address"]) == {
        ALLERGY: "deny",
        "resident.address": "allow",
    }
    # After its end the first decision no longer counts.
    later = until + timedelta(seconds=1)
    assert await consent.effective(user, HOSPITAL_A, ["resident.address"], at=later) == {
        "resident.address": "deny"
    }
    assert await consent.effective(
        user, HOSPITAL_A, ["resident.address"], at=until - timedelta(seconds=1)
    ) == {"resident.address": "allow"}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_concurrent_decisions_of_one_person_each_take_their_own_sequence(
    make_consent,  # type: ignore[no-untyped-def]
    citizen: Enrolled,
    database: str,
):
    """Two decisions for two recipients, each sent twice at once: the reads before the receipt all
    see the same next sequence; the writes decide. Each decision is recorded once, with its own
    number (the loser of the sequence is checked and stored again); each copy is a replay."""
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if database == "postgresql":
            url = await stack.enter_async_context(scratch_database("tsunagu_consent_race"))
        consent = await stack.enter_async_context(make_consent(url))
        user = citizen.user_number
        await consent.ask(user, HOSPITAL_A, {ALLERGY: True})
        await consent.ask(user, HOSPITAL_B, {ALLERGY: True})
        pending = await wallet.fetch_requests(consent.client, citizen)
        tokens = [
            wallet.sign_statement(
                citizen.signing, wallet.decision_statement(p, {ALLERGY: True}, previous=p["previous"])
            )
            for p in pending
        ]
        responses = await asyncio.gather(
            *(consent.client.post("/v1/decisions", json={"decision": token}) for token in tokens + tokens)
        )
        assert sorted(r.status_code for r in responses) == [201, 201, 409, 409]
        assert all(r.json()["type"].endswith("nonce-replayed") for r in responses if r.status_code == 409)
        recorded = [r.json() for r in responses if r.status_code == 201]
        assert sorted(r["sequence"] for r in recorded) == [1, 2]
        rows = [row for row in await consent.rows("decision") if row["user_number"] == user]
        assert sorted(row["sequence"] for row in rows) == [1, 2]
        assert {row["receipt"] for row in rows} == {r["receipt"] for r in recorded}
        items = [row for row in await consent.rows("decision_item") if row["user_number"] == user]
        assert len(items) == 2
        requests = [row for row in await consent.rows("consent_request") if row["user_number"] == user]
        assert {row["state"] for row in requests} == {"answered"}
