"""The wallet's signed decision on a login (or CIBA) transaction.

A compact JWS, header ``{"alg", "typ": "tsunagu-login+jwt", "x5c": [certificate]}``, payload
``{"aud": <issuer>, "tx", "challenge", "decision": "approve"|"deny", "iat", "jti"}``, signed with
the key of the citizen's authentication certificate (or of the per-app certificate of the client's
app). Checked here: shape and size, signature with the presented certificate's key, audience,
transaction, challenge, freshness; then the CA says whether the certificate is one it issued and
good now, and whose it is — the person comes from the CA's answer, never from the payload. The
``jti`` is made single-use by the caller in the transaction that records the decision.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.clients.ca import CaClient
from tsunagu.idp.domain.errors import ApprovalSignatureInvalid, CertificateNotAccepted, InvalidApproval

TYP = "tsunagu-login+jwt"
MAX_APPROVAL_BYTES = 16_384
SKEW_S = 30
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "RS256": hashes.SHA256(),
    "PS256": hashes.SHA256(),
}


@dataclass(frozen=True)
class VerifiedApproval:
    decision: str  # approve | deny
    user_number: str
    certificate_serial: str
    certificate_kind: str  # authentication | app
    app_id: str | None
    jti: str
    issued_at: int


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidApproval("the approval is not base64url") from None


def _json(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part))
    except ValueError:
        raise InvalidApproval(f"the approval's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidApproval(f"the approval's {what} is not a JSON object")
    return value


@dataclass(frozen=True)
class ParsedApproval:
    header: dict[str, Any]
    payload: dict[str, Any]
    certificate: x509.Certificate
    signing_input: bytes
    signature: bytes


def parse(approval: str) -> ParsedApproval:
    if len(approval) > MAX_APPROVAL_BYTES:
        raise InvalidApproval("the approval is too large")
    parts = approval.split(".")
    if len(parts) != 3:
        raise InvalidApproval("the approval is not a compact JWS")
    header, payload = _json(parts[0], "header"), _json(parts[1], "payload")
    if header.get("typ") != TYP:
        raise InvalidApproval(f"typ must be {TYP}")
    if header.get("alg") not in _HASHES:
        raise InvalidApproval("alg must be ES256, ES384, RS256 or PS256")
    if "crit" in header:
        raise InvalidApproval("no critical header parameters are understood")
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise InvalidApproval("x5c with the certificate is required")
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except (binascii.Error, ValueError):
        raise InvalidApproval("the x5c certificate does not parse") from None
    return ParsedApproval(
        header, payload, certificate, f"{parts[0]}.{parts[1]}".encode("ascii"), _b64url(parts[2])
    )


def verify_signature(parsed: ParsedApproval) -> None:
    algorithm = parsed.header["alg"]
    key = parsed.certificate.public_key()
    digest = _HASHES[algorithm]
    try:
        if algorithm.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(parsed.signature) != 2 * size:
                raise ApprovalSignatureInvalid("the ECDSA signature has the wrong length")
            r = int.from_bytes(parsed.signature[:size], "big")
            s = int.from_bytes(parsed.signature[size:], "big")
            key.verify(utils.encode_dss_signature(r, s), parsed.signing_input, ec.ECDSA(digest))
        elif algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(parsed.signature, parsed.signing_input, padding.PKCS1v15(), digest)
        elif algorithm == "PS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(
                parsed.signature,
                parsed.signing_input,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                digest,
            )
        else:
            raise ApprovalSignatureInvalid("alg does not match the certificate's key")
    except InvalidSignature:
        raise ApprovalSignatureInvalid("the signature does not verify") from None


def check_claims(
    parsed: ParsedApproval,
    *,
    issuer: str,
    tx: str | None,
    challenge: str | None,
    now: datetime,
    max_age_s: int,
) -> tuple[str, str, int]:
    """(decision, jti, iat) once audience, transaction, challenge and freshness hold. ``tx`` None:
    a request that names no transaction (the wallet's CIBA inbox), ``tx`` must then be ``*``."""
    payload = parsed.payload
    if payload.get("aud") != issuer:
        raise InvalidApproval("aud must be this issuer")
    presented_tx = payload.get("tx")
    if tx is None:
        if presented_tx != "*":
            raise InvalidApproval("tx must be * for a request that names no transaction")
    elif not isinstance(presented_tx, str) or not hmac.compare_digest(presented_tx, tx):
        raise InvalidApproval("the approval is for another transaction")
    if challenge is not None:
        presented = payload.get("challenge")
        if not isinstance(presented, str) or not hmac.compare_digest(presented, challenge):
            raise InvalidApproval("the challenge does not match the transaction")
    decision = payload.get("decision", "approve" if tx is None else None)
    if decision not in ("approve", "deny"):
        raise InvalidApproval("decision must be approve or deny")
    issued = payload.get("iat")
    stamp = int(now.timestamp())
    if not isinstance(issued, int) or isinstance(issued, bool):
        raise InvalidApproval("iat is required")
    if issued > stamp + SKEW_S or issued < stamp - max_age_s:
        raise InvalidApproval("the approval is not fresh (iat)")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise InvalidApproval("jti is required (8–128 characters)")
    return str(decision), jti, issued


async def certificate_holder(
    ca: CaClient, certificate: x509.Certificate, *, app_id: str | None, now: datetime
) -> tuple[str, str, str, str | None]:
    """(user number, serial, kind, app id) when the CA issued this certificate and it is good now,
    and it is an authentication certificate or the per-app certificate of ``app_id``."""
    answer = await ca.validate(certificate.public_bytes(Encoding.PEM).decode(), at=now)
    if answer is None:
        raise CertificateNotAccepted("the certificate was not issued by our CA")
    if answer.get("status") != "good":
        raise CertificateNotAccepted(f"the certificate is {answer.get('status')}")
    kind = answer.get("kind")
    if kind == "app":
        if app_id is None or answer.get("app_id") != app_id:
            raise CertificateNotAccepted("a per-app certificate approves logins to its own app only")
    elif kind != "authentication":
        raise CertificateNotAccepted("an authentication certificate is required")
    return str(answer["user_number"]), str(answer["serial"]), str(kind), answer.get("app_id")


async def verify(
    approval: str,
    *,
    ca: CaClient,
    issuer: str,
    tx: str | None,
    challenge: str | None,
    app_id: str | None,
    now: datetime,
    max_age_s: int,
) -> VerifiedApproval:
    parsed = parse(approval)
    verify_signature(parsed)
    decision, jti, issued = check_claims(
        parsed, issuer=issuer, tx=tx, challenge=challenge, now=now, max_age_s=max_age_s
    )
    user_number, serial, kind, app = await certificate_holder(ca, parsed.certificate, app_id=app_id, now=now)
    return VerifiedApproval(decision, user_number, serial, kind, app, jti, issued)
