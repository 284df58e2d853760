"""Every bad decision gets its own 4xx problem and changes nothing: no decision, no item, no
event, the request still pending."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.consent.conftest import HOSPITAL_A, ConsentHarness, enroll_citizen
from tsunagu.consent.domain.jws_rfc7515 import b64url_encode
from tsunagu.wallet import Enrolled, SoftwareKey, revoke
from tsunagu.wallet import consent as wallet
from tsunagu.wallet.enroll import Credential

ALLERGY = "health.allergy"


def _raw_jws(header: dict[str, Any], payload: bytes, key: SoftwareKey) -> str:
    signing_input = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(payload)}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _x5c(credential: Credential) -> list[str]:
    return [
        base64.b64encode(x509.load_pem_x509_certificate(p.encode()).public_bytes(Encoding.DER)).decode()
        for p in [credential.certificate_pem, *credential.chain]
    ]


def _header(credential: Credential) -> dict[str, Any]:
    return {"alg": "ES256", "typ": wallet.DECISION_TYP, "x5c": _x5c(credential)}


def _canonical(statement: dict[str, Any]) -> bytes:
    import rfc8785

    return rfc8785.dumps(statement)


def _self_signed() -> tuple[SoftwareKey, str]:
    key = SoftwareKey()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not ours")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key.private_key, hashes.SHA256())
    )
    return key, base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()


async def _refused(consent: ConsentHarness, token: Any, status: int, code: str) -> None:
    response = await consent.client.post("/v1/decisions", json={"decision": token})
    assert response.status_code == status, (code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:tsunagu:problem:{code}", response.text
    assert await consent.count("decision") == 0
    assert await consent.count("decision_item") == 0
    assert [e for e in await consent.events() if e["type"].endswith("decision.recorded")] == []


@pytest.fixture
async def asked(consent: ConsentHarness, citizen: Enrolled) -> dict[str, Any]:
    await consent.ask(citizen.user_number, HOSPITAL_A, {ALLERGY: True, "resident.name": False})
    (request,) = await wallet.fetch_requests(consent.client, citizen)
    return request


async def test_malformed_unsigned_and_forged_statements(consent: ConsentHarness, citizen: Enrolled, asked):  # type: ignore[no-untyped-def]
    good = wallet.decision_statement(asked, {ALLERGY: True}, previous=None)
    signed = wallet.sign_statement(citizen.signing, good)
    header, payload, signature = signed.split(".")
    for token in ("", "garbage", "a.b", f"{header}.{payload}", f"{header}.{payload}.***"):
        await _refused(consent, token, 400, "malformed-jws")
    await _refused(consent, "x" * 40_000, 422, "validation-failed")  # over the body schema's limit
    await _refused(consent, {"not": "a string"}, 422, "validation-failed")
    # "Unsigned": alg none, or an empty signature.
    none = b64url_encode(json.dumps({**_header(citizen.signing), "alg": "none"}).encode())
    await _refused(consent, f"{none}.{payload}.", 400, "malformed-jws")
    await _refused(consent, f"{header}.{payload}.", 400, "malformed-jws")
    # No x5c, or one that is not a certificate.
    no_chain = b64url_encode(json.dumps({"alg": "ES256", "typ": wallet.DECISION_TYP}).encode())
    await _refused(consent, f"{no_chain}.{payload}.{signature}", 400, "malformed-jws")
    bad_chain = b64url_encode(json.dumps({**_header(citizen.signing), "x5c": ["AAAA"]}).encode())
    await _refused(consent, f"{bad_chain}.{payload}.{signature}", 400, "malformed-jws")
    # Forged: the citizen's certificate, another key's signature; a tampered payload.
    forged = _raw_jws(_header(citizen.signing), _canonical(good), SoftwareKey())
    await _refused(consent, forged, 400, "signature-invalid")
    tampered = b64url_encode(_canonical({**good, "items": {ALLERGY: "allow", "resident.name": "allow"}}))
    await _refused(consent, f"{header}.{tampered}.{signature}", 400, "signature-invalid")
    # Signed, but not JSON / not canonical / not the schema.
    key = citizen.signing.key
    assert isinstance(key, SoftwareKey)
    await _refused(consent, _raw_jws(_header(citizen.signing), b"not json", key), 400, "malformed-statement")
    spaced = json.dumps(good, indent=1).encode()
    await _refused(consent, _raw_jws(_header(citizen.signing), spaced, key), 400, "statement-not-canonical")
    for broken in (
        {**good, "v": 2},
        {**good, "user_number": citizen.user_number},  # never from the body: not even accepted
        {**good, "items": {ALLERGY: "maybe"}},
        {**good, "nonce": "short"},
        {**good, "signed_at": "yesterday"},
        {k: v for k, v in good.items() if k != "nonce"},
    ):
        await _refused(
            consent, _raw_jws(_header(citizen.signing), _canonical(broken), key), 400, "malformed-statement"
        )
    # The signing certificate is required; the authentication one does not decide.
    auth_signed = citizen.authentication.key.sign_compact(
        {"typ": wallet.DECISION_TYP, "x5c": _x5c(citizen.authentication)}, json.loads(_canonical(good))
    )
    await _refused(consent, auth_signed, 403, "certificate-wrong-kind")
    # A certificate the CA never issued.
    stranger, certificate = _self_signed()
    foreign = _raw_jws(
        {"alg": "ES256", "typ": wallet.DECISION_TYP, "x5c": [certificate]}, _canonical(good), stranger
    )
    await _refused(consent, foreign, 403, "certificate-unknown")
    # A chain that is not the CA's for this certificate.
    _, other = _self_signed()
    wrong_chain = _raw_jws(
        {**_header(citizen.signing), "x5c": [_x5c(citizen.signing)[0], other]}, _canonical(good), key
    )
    await _refused(consent, wrong_chain, 400, "chain-mismatch")
    # Still answerable afterwards.
    assert (await wallet.submit(consent.client, signed))["sequence"] == 1


async def test_what_the_statement_says_must_fit_the_request(
    consent: ConsentHarness, citizen: Enrolled, asked
):  # type: ignore[no-untyped-def]
    def send(**changes: Any) -> str:
        statement = {**wallet.decision_statement(asked, {ALLERGY: True}, previous=None), **changes}
        return wallet.sign_statement(citizen.signing, statement)

    now = datetime.now(UTC)
    stale = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await _refused(consent, send(signed_at=stale), 400, "stale-signature")
    await _refused(consent, send(signed_at=future), 400, "stale-signature")
    await _refused(
        consent,
        send(items={ALLERGY: "allow", "resident.name": "deny", "resident.sex": "allow"}),
        422,
        "items-not-requested",
    )
    await _refused(consent, send(items={ALLERGY: "allow"}), 422, "items-missing")
    await _refused(consent, send(items={ALLERGY: "allow", "health.genome": "allow"}), 422, "unknown-item")
    await _refused(consent, send(recipient="hospital-z"), 422, "unknown-recipient")
    await _refused(consent, send(recipient="hospital-b"), 422, "statement-mismatch")
    await _refused(consent, send(purpose={**asked["purpose"], "en": "Marketing"}), 422, "statement-mismatch")
    await _refused(consent, send(notice={"version": "1", "sha256": "0" * 64}), 422, "statement-mismatch")
    later = (datetime.fromisoformat(asked["validity"]["until"]) + timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    await _refused(consent, send(validity={**asked["validity"], "until": later}), 422, "statement-mismatch")
    await _refused(consent, send(request_id="no-such-request"), 404, "consent-request-not-found")
    await _refused(consent, send(previous="a" * 64), 409, "previous-mismatch")
    await _refused(consent, send(supersedes="no-such-decision"), 404, "decision-not-found")
    await _refused(consent, send(action="withdraw"), 422, "invalid-withdrawal")
    await _refused(consent, send(notice=None), 400, "malformed-statement")


async def test_another_persons_certificate_is_refused(
    consent: ConsentHarness,
    citizen: Enrolled,
    other_citizen: Enrolled,
    asked,  # type: ignore[no-untyped-def]
):
    statement = wallet.decision_statement(asked, {ALLERGY: True}, previous=None)
    await _refused(consent, wallet.sign_statement(other_citizen.signing, statement), 403, "not-your-request")
    # Nor may another person read this person's requests: their wallet sees none.
    assert await wallet.fetch_requests(consent.client, other_citizen) == []


async def test_replayed_nonce_and_replayed_statement(consent: ConsentHarness, citizen: Enrolled, asked):  # type: ignore[no-untyped-def]
    statement = wallet.decision_statement(asked, {ALLERGY: True}, previous=None)
    token = wallet.sign_statement(citizen.signing, statement)
    recorded = await wallet.submit(consent.client, token)
    before = await consent.rows("decision")
    response = await consent.client.post("/v1/decisions", json={"decision": token})
    assert response.status_code == 409 and response.json()["type"].endswith("nonce-replayed")
    # The same nonce in a fresh answer to a new request.
    await consent.ask(citizen.user_number, HOSPITAL_A, {ALLERGY: True})
    (again,) = await wallet.fetch_requests(consent.client, citizen)
    reuse = wallet.decision_statement(
        again, {ALLERGY: True}, previous=recorded["decision_sha256"], nonce=statement["nonce"]
    )
    response = await consent.client.post(
        "/v1/decisions", json={"decision": wallet.sign_statement(citizen.signing, reuse)}
    )
    assert response.status_code == 409 and response.json()["type"].endswith("nonce-replayed")
    # An answered request cannot be answered again (fresh nonce, right chain head).
    twice = wallet.decision_statement(asked, {ALLERGY: False}, previous=recorded["decision_sha256"])
    response = await consent.client.post(
        "/v1/decisions", json={"decision": wallet.sign_statement(citizen.signing, twice)}
    )
    assert response.status_code == 409 and response.json()["type"].endswith("request-not-pending")
    assert await consent.rows("decision") == before
    # A signed wallet query is single use too.
    query = wallet.signed_query(citizen.authentication, "history")
    assert (await consent.client.post("/v1/wallet/history", json={"request": query})).status_code == 200
    replay = await consent.client.post("/v1/wallet/history", json={"request": query})
    assert replay.status_code == 409 and replay.json()["type"].endswith("request-replayed")


async def test_revoked_certificate_is_refused(consent: ConsentHarness):
    person = await enroll_citizen(consent.stack, "失効 三郎")
    await consent.ask(person.user_number, HOSPITAL_A, {ALLERGY: True})
    (request,) = await wallet.fetch_requests(consent.client, person)
    async with httpx.AsyncClient(base_url=consent.stack.urls["ca"], timeout=30) as ca:
        assert await revoke(ca, person, serials=[person.signing.serial]) == [person.signing.serial]
    statement = wallet.decision_statement(request, {ALLERGY: True}, previous=None)
    await _refused(consent, wallet.sign_statement(person.signing, statement), 403, "certificate-not-good")


async def test_bad_requests_from_services(consent: ConsentHarness, citizen: Enrolled):
    user = citizen.user_number
    unknown_item = await consent.ask(user, HOSPITAL_A, {"health.genome": True}, expect=422)
    assert unknown_item["type"].endswith("unknown-item")
    unknown_recipient = await consent.ask(user, "hospital-z", {ALLERGY: True}, expect=422)
    assert unknown_recipient["type"].endswith("unknown-recipient")
    past = await consent.ask(
        user, HOSPITAL_A, {ALLERGY: True}, until=datetime.now(UTC) - timedelta(days=1), expect=422
    )
    assert past["type"].endswith("invalid-consent-request")
    assert await consent.count("consent_request") == 0
    # Only granted callers: the CA may not ask, the idp may not export.
    body = {"user_number": user, "recipient": HOSPITAL_A, "items": [ALLERGY], "purpose": "treatment"}
    assert (
        await consent.client.post("/internal/v1/effective", json=body, auth=consent.auth("ca"))
    ).status_code == 403
    assert (await consent.client.post("/internal/v1/effective", json=body)).status_code == 401
    assert (
        await consent.client.post(
            "/internal/v1/effective", json={**body, "items": []}, auth=consent.auth("idp")
        )
    ).status_code == 422
    nonce = secrets.token_urlsafe(8)
    assert (
        await consent.client.get(f"/internal/v1/decisions/{nonce}/export", auth=consent.auth("idp"))
    ).status_code == 403
