"""Every bad input the CA issue names gets its own problem+json error — and leaves nothing behind:
no person, no number, no certificate, no evidence, no event. Each test runs on SQLite (the ORM)
and on PostgreSQL, where enrollment reads and writes go straight through asyncpg."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.ca.conftest import CaHarness
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import SoftwareKey, WalletError, enroll
from tsunagu.wallet.card import basic4_consent
from tsunagu.wallet.keys import b64url, request_claims

TABLES = ("person", "jpki_identity", "certificate", "proofing_record")


@pytest.fixture(params=["sqlite", "postgresql"])
async def ca(request: pytest.FixtureRequest, make_ca) -> AsyncIterator[CaHarness]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        async with make_ca() as harness:
            yield harness
        return
    async with scratch_database("tsunagu_ca_refusals") as url, make_ca(url) as harness:
        yield harness


async def _snapshot(ca: CaHarness) -> dict[str, Any]:
    counts: dict[str, Any] = {table: len(await ca.rows(table)) for table in TABLES}
    counts["events"] = len(await ca.events())
    return counts


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:tsunagu:problem:{code}", body
    return body


async def _started(ca: CaHarness) -> dict[str, Any]:
    response = await ca.client.post("/v1/enrollments")
    assert response.status_code == 201
    return dict(response.json())


async def _prove(
    ca: CaHarness, started: dict[str, Any], certificate_pem: str, signature: bytes
) -> httpx.Response:
    return await ca.client.post(
        f"/v1/enrollments/{started['enrollment_id']}/jpki-proof",
        json={"jpki_certificate": certificate_pem, "signature": b64url(signature)},
    )


async def _proofed(ca: CaHarness) -> tuple[dict[str, Any], Any]:
    card, _ = await ca.new_card()
    started = await _started(ca)
    response = await _prove(
        ca, started, await card.signing_certificate_pem(), await card.sign(started["signed_data"].encode())
    )
    assert response.status_code == 200, response.text
    return started, card


def _self_signed_rsa() -> str:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not J-LIS")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


async def test_card_proof_refusals(ca: CaHarness):
    card, issued = await ca.new_card()
    pem = await card.signing_certificate_pem()
    before = await _snapshot(ca)

    started = await _started(ca)
    good_signature = await card.sign(started["signed_data"].encode())
    _problem(await _prove(ca, started, _self_signed_rsa(), good_signature), 400, "unknown-jpki-issuer")
    _problem(
        await _prove(
            ca, started, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", good_signature
        ),
        400,
        "invalid-jpki-certificate",
    )
    _problem(
        await _prove(ca, started, pem, await card.sign(b"something else")), 400, "invalid-jpki-signature"
    )
    other = await _started(ca)  # a signature over another enrollment's challenge
    _problem(
        await _prove(ca, started, pem, await card.sign(other["signed_data"].encode())),
        400,
        "invalid-jpki-signature",
    )
    _problem(
        await _prove(ca, started, issued["auth_certificate"], good_signature), 400, "unknown-jpki-issuer"
    )
    oversize = await ca.client.post(
        f"/v1/enrollments/{started['enrollment_id']}/jpki-proof",
        json={"jpki_certificate": "A" * 20_000, "signature": "AA"},
    )
    _problem(oversize, 422, "validation-failed")
    _problem(await _prove(ca, {"enrollment_id": "nope"}, pem, good_signature), 404, "enrollment-not-found")
    assert await _snapshot(ca) == before

    # the right proof works once; the same challenge answered again is refused
    assert (await _prove(ca, started, pem, good_signature)).status_code == 200
    after = await _snapshot(ca)
    _problem(await _prove(ca, started, pem, good_signature), 409, "challenge-reused")
    assert await _snapshot(ca) == after


async def test_expired_challenge_and_expired_card(ca: CaHarness):
    card, _ = await ca.new_card()
    pem = await card.signing_certificate_pem()
    before = await _snapshot(ca)
    real_clock = ca.services.ca.clock
    started = await _started(ca)
    signature = await card.sign(started["signed_data"].encode())
    try:
        ca.services.ca.clock = lambda: real_clock() + timedelta(hours=1)
        _problem(await _prove(ca, started, pem, signature), 400, "challenge-expired")
        ca.services.ca.clock = lambda: real_clock() + timedelta(days=365 * 6)  # past the card's validity
        late = await _started(ca)
        late_signature = await card.sign(late["signed_data"].encode())
        _problem(await _prove(ca, late, pem, late_signature), 400, "jpki-certificate-expired")
    finally:
        ca.services.ca.clock = real_clock
    assert await _snapshot(ca) == before


async def test_a_lost_card_is_refused(ca: CaHarness):
    card, issued = await ca.new_card()
    (await ca.jlis.post(f"/persons/{issued['person_id']}/lose")).raise_for_status()
    before = await _snapshot(ca)
    started = await _started(ca)
    response = await _prove(
        ca, started, await card.signing_certificate_pem(), await card.sign(started["signed_data"].encode())
    )
    _problem(response, 403, "jpki-certificate-revoked")
    assert await _snapshot(ca) == before


def _tampered_csr(key: SoftwareKey) -> str:
    der = x509.load_pem_x509_csr(key.csr_pem().encode()).public_bytes(serialization.Encoding.DER)
    broken = der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]  # a bit of the signature
    return x509.load_der_x509_csr(broken).public_bytes(serialization.Encoding.PEM).decode()


def _csr_for(private_key: Any) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(private_key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_csr_refusals(ca: CaHarness):
    started, _ = await _proofed(ca)
    path = f"/v1/enrollments/{started['enrollment_id']}/signing-certificate"
    before = await _snapshot(ca)
    _problem(await ca.client.post(path, json={"csr": "not a CSR"}), 400, "invalid-csr")
    _problem(await ca.client.post(path, json={"csr": "x" * 20_000}), 422, "validation-failed")
    _problem(
        await ca.client.post(path, json={"csr": _tampered_csr(SoftwareKey())}), 400, "csr-signature-invalid"
    )
    weak = rsa.generate_private_key(65537, 1024)
    _problem(await ca.client.post(path, json={"csr": _csr_for(weak)}), 400, "key-policy-violation")
    koblitz = ec.generate_private_key(ec.SECP256K1())
    _problem(await ca.client.post(path, json={"csr": _csr_for(koblitz)}), 400, "key-policy-violation")
    _problem(
        await ca.client.post(path.replace("signing", "authentication"), json={"request": "a.b.c"}),
        409,
        "wrong-enrollment-state",
    )
    assert await _snapshot(ca) == before


async def test_a_public_key_is_certified_once(ca: CaHarness):
    card, _ = await ca.new_card()
    key = SoftwareKey()
    await enroll(ca.client, card, signing_key=key)
    before = await _snapshot(ca)
    with pytest.raises(WalletError) as refused:
        await enroll(ca.client, card, signing_key=key)
    assert refused.value.status == 409 and refused.value.problem["type"].endswith("public-key-reused")
    after = await _snapshot(ca)
    # the second proof went through (a new phone enrollment), but no certificate was made
    assert after["certificate"] == before["certificate"]


async def test_signed_request_refusals(ca: CaHarness):
    card, _ = await ca.new_card()
    enrolled = await enroll(ca.client, card)
    stranger = SoftwareKey()
    auth = enrolled.authentication
    before = await _snapshot(ca)

    async def app_request(token: str) -> httpx.Response:
        return await ca.client.post("/v1/app-certificates", json={"request": token})

    claims = request_claims(app_id="clinic", csr=SoftwareKey().csr_pem())
    _problem(await app_request(stranger.sign_jws(claims, kid=auth.serial)), 401, "invalid-signed-request")
    _problem(await app_request(auth.key.sign_jws(claims, kid="abcdef")), 401, "invalid-signed-request")
    _problem(await app_request("not-a-jws"), 401, "invalid-signed-request")
    stale = request_claims(
        app_id="clinic", csr=SoftwareKey().csr_pem(), iat=int(datetime.now(UTC).timestamp()) - 3600
    )
    _problem(await app_request(auth.key.sign_jws(stale, kid=auth.serial)), 400, "signed-request-stale")
    wrong_audience = {**claims, "aud": "someone-else"}
    _problem(
        await app_request(auth.key.sign_jws(wrong_audience, kid=auth.serial)), 401, "invalid-signed-request"
    )
    # the signing key may not ask for app certificates: only an authentication key
    _problem(
        await app_request(enrolled.signing.key.sign_jws(claims, kid=enrolled.signing.serial)),
        403,
        "certificate-not-usable",
    )
    assert await _snapshot(ca) == before

    token = auth.key.sign_jws(claims, kid=auth.serial)
    assert (await app_request(token)).status_code == 201
    after = await _snapshot(ca)
    _problem(await app_request(token), 409, "signed-request-replayed")
    assert await _snapshot(ca) == after


async def test_authentication_certificate_needs_the_new_signing_key(ca: CaHarness):
    started, _ = await _proofed(ca)
    enrollment = started["enrollment_id"]
    signing_key = SoftwareKey()
    signing = (
        await ca.client.post(
            f"/v1/enrollments/{enrollment}/signing-certificate", json={"csr": signing_key.csr_pem()}
        )
    ).json()
    path = f"/v1/enrollments/{enrollment}/authentication-certificate"
    before = await _snapshot(ca)
    other_enrollment = request_claims(enrollment_id="another", csr=SoftwareKey().csr_pem())
    _problem(
        await ca.client.post(
            path, json={"request": signing_key.sign_jws(other_enrollment, kid=signing["serial"])}
        ),
        401,
        "invalid-signed-request",
    )
    forged = request_claims(enrollment_id=enrollment, csr=SoftwareKey().csr_pem())
    _problem(
        await ca.client.post(path, json={"request": SoftwareKey().sign_jws(forged, kid=signing["serial"])}),
        401,
        "invalid-signed-request",
    )
    assert await _snapshot(ca) == before
    good = signing_key.sign_jws(
        request_claims(enrollment_id=enrollment, csr=SoftwareKey().csr_pem()), kid=signing["serial"]
    )
    assert (await ca.client.post(path, json={"request": good})).status_code == 201


async def test_wallet_routes_are_rate_limited(make_ca):  # type: ignore[no-untyped-def]
    async with make_ca(rate_limit_per_s=0.5, rate_limit_burst=4) as ca:  # the ceremony took one
        responses = [await ca.client.post("/v1/enrollments") for _ in range(6)]
    assert [r.status_code for r in responses[:3]] == [201, 201, 201]
    _problem(responses[-1], 429, "too-many-requests")


async def test_the_basic4_consent_must_be_the_cards_own(ca: CaHarness):
    card, _ = await ca.new_card()
    other_card, _ = await ca.new_card()
    started = await _started(ca)
    before = await _snapshot(ca)
    response = await ca.client.post(
        f"/v1/enrollments/{started['enrollment_id']}/jpki-proof",
        json={
            "jpki_certificate": await card.signing_certificate_pem(),
            "signature": b64url(await card.sign(started["signed_data"].encode())),
            "basic4_consent": await basic4_consent(other_card, "tsunagu"),
        },
    )
    assert response.status_code == 400 and "consent" in response.json()["type"], response.text
    assert await _snapshot(ca) == before
    # nothing is half-done: the same enrollment can still be completed properly
    assert (
        await _prove(
            ca,
            started,
            await card.signing_certificate_pem(),
            await card.sign(started["signed_data"].encode()),
        )
    ).status_code == 200


async def test_a_proven_enrollment_must_be_completed_in_time(ca: CaHarness):
    started, _ = await _proofed(ca)
    real_clock = ca.services.ca.clock
    before = await _snapshot(ca)
    try:
        ca.services.ca.clock = lambda: real_clock() + timedelta(hours=2)
        late = await ca.client.post(
            f"/v1/enrollments/{started['enrollment_id']}/signing-certificate",
            json={"csr": SoftwareKey().csr_pem()},
        )
        _problem(late, 400, "challenge-expired")
    finally:
        ca.services.ca.clock = real_clock
    assert await _snapshot(ca) == before
