"""The wallet's signed decision, checked against the real CA (certificates issued by the stack's
CA process; status asked over HTTP): every way it can be wrong is refused with its own error."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.idp.conftest import ISSUER, enroll_citizen
from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.clients.ca import CaClient
from tsunagu.idp.domain import wallet_approval
from tsunagu.idp.domain.errors import ApprovalSignatureInvalid, CertificateNotAccepted, InvalidApproval
from tsunagu.wallet import Enrolled, SoftwareKey, request_app_certificate, revoke, signed_decision
from tsunagu.wallet.enroll import Credential

TX = "tx-0123456789abcdefghijklmnopqrstuvwxyzABCDE"
CHALLENGE = "challenge-0123456789abcdefghijklmnopqrstuvw"


@pytest.fixture
async def ca(idp_platform: Any) -> AsyncIterator[CaClient]:
    credentials = idp_platform.config.state_dir / "credentials"
    issuer = ServiceTokenIssuer("idp", load_private_key(credentials / "idp.key.pem"))
    client = CaClient(idp_platform.urls["ca"], issuer)
    yield client
    await client.aclose()


async def check(
    ca: CaClient, approval: str, *, app_id: str | None = None, now: datetime | None = None
) -> Any:
    return await wallet_approval.verify(
        approval,
        ca=ca,
        issuer=ISSUER,
        tx=TX,
        challenge=CHALLENGE,
        app_id=app_id,
        now=now or datetime.now(UTC),
        max_age_s=300,
    )


def approval(credential: Credential, **overrides: Any) -> str:
    return signed_decision(credential, audience=ISSUER, tx=TX, challenge=CHALLENGE, **overrides)


async def test_an_approval_names_the_person_the_ca_knows(ca: CaClient, citizen: Enrolled) -> None:
    verified = await check(ca, approval(citizen.authentication))
    assert verified.decision == "approve"
    assert verified.user_number == citizen.user_number
    assert verified.certificate_serial == citizen.authentication.serial
    assert verified.certificate_kind == "authentication"
    declined = await check(ca, approval(citizen.authentication, approve=False))
    assert declined.decision == "deny"


def tamper(token: str, **claims: Any) -> str:
    """Re-sign nothing: change the payload and keep the old signature."""
    import json

    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data.update(claims)
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def resign(credential: Credential, header: dict[str, Any] | None = None, **claims: Any) -> str:
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    base = {
        "typ": "tsunagu-login+jwt",
        "x5c": [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()],
    }
    payload = {
        "aud": ISSUER,
        "tx": TX,
        "challenge": CHALLENGE,
        "decision": "approve",
        "iat": int(time.time()),
        "jti": "jti-0123456789",
    }
    payload.update(claims)
    return credential.key.sign_compact({**base, **(header or {})}, payload)


async def test_every_mismatch_is_refused(ca: CaClient, citizen: Enrolled) -> None:
    auth = citizen.authentication
    cases: list[tuple[str, type[Exception]]] = [
        (tamper(approval(auth), tx="another"), ApprovalSignatureInvalid),
        (resign(auth, tx="another-transaction"), InvalidApproval),
        (resign(auth, challenge="another-challenge"), InvalidApproval),
        (resign(auth, aud="https://other-issuer.example"), InvalidApproval),
        (resign(auth, iat=int(time.time()) - 3600), InvalidApproval),
        (resign(auth, iat=int(time.time()) + 3600), InvalidApproval),
        (resign(auth, decision="maybe"), InvalidApproval),
        (resign(auth, jti="x"), InvalidApproval),
        (resign(auth, header={"typ": "JWT"}), InvalidApproval),
        (resign(auth, header={"x5c": ["bm90IGEgY2VydGlmaWNhdGU="]}), InvalidApproval),
        (resign(auth, header={"crit": ["exp"]}), InvalidApproval),
        ("a.b", InvalidApproval),
        ("x" * 20_000, InvalidApproval),
    ]
    for token, expected in cases:
        with pytest.raises(expected):
            await check(ca, token)


async def test_a_certificate_we_did_not_issue_is_refused(ca: CaClient, citizen: Enrolled) -> None:
    """Same key, same subject, self-signed: the signature verifies, the CA does not know it."""
    key = SoftwareKey()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")])
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(int(citizen.authentication.serial, 16))
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .sign(key.private_key, hashes.SHA256())
    )
    credential = Credential(
        key, citizen.authentication.serial, forged.public_bytes(Encoding.PEM).decode(), []
    )
    with pytest.raises(CertificateNotAccepted):
        await check(ca, approval(credential))


async def test_signing_and_other_apps_certificates_do_not_log_in(
    ca: CaClient, citizen: Enrolled, idp_platform: Any
) -> None:
    with pytest.raises(CertificateNotAccepted):
        await check(ca, approval(citizen.signing))
    async with httpx.AsyncClient(base_url=idp_platform.urls["ca"], timeout=30) as http:
        app = await request_app_certificate(http, citizen, "hospital-a-app", key=SoftwareKey())
    assert (await check(ca, approval(app), app_id="hospital-a-app")).certificate_kind == "app"
    with pytest.raises(CertificateNotAccepted):
        await check(ca, approval(app), app_id="bank-app")
    with pytest.raises(CertificateNotAccepted):
        await check(ca, approval(app), app_id=None)


async def test_a_revoked_certificate_is_refused(ca: CaClient, idp_platform: Any) -> None:
    person = await enroll_citizen(idp_platform, name="失効 花子")
    assert (await check(ca, approval(person.authentication))).user_number == person.user_number
    async with httpx.AsyncClient(base_url=idp_platform.urls["ca"], timeout=30) as http:
        await revoke(http, person, device_id=person.device_id)
    with pytest.raises(CertificateNotAccepted):
        await check(ca, approval(person.authentication))


async def test_an_rsa_key_must_sign_with_an_rsa_algorithm(ca: CaClient, citizen: Enrolled) -> None:
    """alg names the algorithm; it must fit the certificate's key (no ES/RS confusion)."""
    token = resign(citizen.authentication)
    header, payload, signature = token.split(".")
    import json

    decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
    decoded["alg"] = "RS256"
    forged_header = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    with pytest.raises(ApprovalSignatureInvalid):
        await check(ca, f"{forged_header}.{payload}.{signature}")
    assert isinstance(ec.SECP256R1(), ec.EllipticCurve)
