"""An exported decision verifies offline with nothing but the CA's published certificates; the
decision events carry everything an auditor needs, and a consumer of the stream sees withdrawals."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.consent.conftest import HOSPITAL_A, ConsentHarness, service_auth
from tsunagu.consent.domain.export_verify import ExportInvalid, verify_export
from tsunagu.events.kafka import make_consumer
from tsunagu.settings import KafkaSettings
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ALLERGY = "health.allergy"


def _ca_certificates(consent: ConsentHarness) -> list[x509.Certificate]:
    """What a third party downloads once: the CA's published chain (issuing CA and root)."""
    pem = httpx.get(f"{consent.stack.urls['ca']}/ca/chain.pem", timeout=10).raise_for_status().content
    return x509.load_pem_x509_certificates(pem)


async def _granted(consent: ConsentHarness, citizen: Enrolled) -> dict[str, Any]:
    await consent.ask(citizen.user_number, HOSPITAL_A, {ALLERGY: True, "resident.birth_date": False})
    (request,) = await wallet.fetch_requests(consent.client, citizen)
    return await wallet.decide(consent.client, citizen, request, {ALLERGY: True})


async def test_exported_decision_verifies_offline_with_only_the_ca_certificates(
    consent: ConsentHarness, citizen: Enrolled
):
    recorded = await _granted(consent, citizen)
    response = await consent.client.get(
        f"/internal/v1/decisions/{recorded['decision_id']}/export", auth=consent.auth("operator")
    )
    assert response.status_code == 200, response.text
    export = json.loads(json.dumps(response.json()))  # what leaves the platform: plain JSON
    # The citizen gets the same document from the wallet.
    assert await wallet.fetch_export(consent.client, citizen, recorded["decision_id"]) == export

    anchors = _ca_certificates(consent)[-1:]  # the root alone is enough
    verified = verify_export(export, anchors)
    assert verified.user_number == citizen.user_number
    assert verified.statement.items == {ALLERGY: "allow", "resident.birth_date": "deny"}
    assert verified.receipt["sequence"] == 1 and verified.receipt_key_trusted is False
    assert verified.ca_status_at_signing == "good"
    # With the signer's published receipt key, the receipt is trusted too.
    key = httpx.get(
        f"{consent.stack.urls['signer']}/v1/keys/{export['receipt_key']['kid']}",
        auth=service_auth(consent.stack, "operator", "signer"),
        timeout=10,
    ).json()
    trusted = verify_export(
        export, anchors, {key["kid"]: load_pem_public_key(key["public_key_pem"].encode())}
    )
    assert trusted.receipt_key_trusted is True
    record = export["record"]
    assert record["event"]["type"] == "partially-given"
    assert record["processing"]["legal_basis"] == "dpv:ExplicitlyExpressedConsent"  # special care

    # Anything changed, or another trust anchor: refused.
    with pytest.raises(ExportInvalid):
        verify_export(export, [])
    tampered = copy.deepcopy(export)
    header, payload, signature = tampered["statement_jws"].split(".")
    tampered["statement_jws"] = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(ExportInvalid):
        verify_export(tampered, anchors)
    swapped = copy.deepcopy(export)
    swapped["decision_id"] = "another-decision"
    with pytest.raises(ExportInvalid, match="another decision"):
        verify_export(swapped, anchors)
    with pytest.raises(ExportInvalid, match="not among"):
        verify_export(export, anchors, {"other": ec.generate_private_key(ec.SECP256R1()).public_key()})


async def test_a_consumer_of_the_events_sees_the_withdrawal(consent: ConsentHarness, citizen: Enrolled):
    recorded = await _granted(consent, citizen)
    withdrawn = await wallet.withdraw(consent.client, citizen, recorded["decision_id"])
    consumer = make_consumer(
        KafkaSettings(bootstrap_servers=consent.stack.broker.bootstrap_servers, fetch_max_wait_ms=20),
        "consent-test-auditor",
        None,
        "tsunagu.consent.decision",
    )
    await consumer.start()
    seen: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(30):
            while withdrawn["decision_id"] not in seen:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for message in records:
                        event = json.loads(message.value)
                        seen[event["data"]["decision_id"]] = {**event, "key": message.key}
    finally:
        await consumer.stop()
    event = seen[withdrawn["decision_id"]]
    assert event["type"] == "tsunagu.consent.decision.recorded"
    assert event["key"] == citizen.user_number.encode()
    data = event["data"]
    assert data["event"] == "withdrawn" and data["supersedes"] == recorded["decision_id"]
    assert data["receipt_jws"] == withdrawn["receipt"]
    # The event alone verifies: its statement, chain and receipt (no database needed).
    verified = verify_export(
        {
            "decision_id": data["decision_id"],
            "statement_jws": data["statement_jws"],
            "receipt_jws": data["receipt_jws"],
            "receipt_key": (
                await consent.app.state.runtime.resources.queries.context.receipts.public_key(
                    data["receipt_kid"]
                )
            ),
        },
        _ca_certificates(consent)[-1:],
    )
    assert verified.statement.action == "withdraw"
