"""Approve (or decline) a login in the wallet: the QR code / app link names a transaction at an
issuer; the wallet shows who asks and for what, and signs its decision with the phone's
authentication key (or the per-app key of that relying party's app).

    tx = await fetch_login(idp, "tsunagu://login?tx=…&issuer=…")   # or the tx id
    await decide_login(idp, tx, enrolled.authentication, approve=True)

A login that asks for data access (RFC 9396 ``authorization_details``) is approved the same way;
the idp then answers the consent request the citizen decides item by item and signs with the
*signing* key at the consent service — :func:`approve_login_with_consent` does both:

    result = await approve_login_with_consent(idp, consent, tx, enrolled, {"health.allergy": True})
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.wallet.consent import decide, fetch_requests
from tsunagu.wallet.enroll import Credential, Enrolled, WalletError, answer

TYP = "tsunagu-login+jwt"


def transaction_id(link_or_tx: str) -> str:
    """The transaction id from a ``tsunagu://login?tx=…`` link (or the id itself)."""
    if link_or_tx.startswith("tsunagu://"):
        values = parse_qs(urlparse(link_or_tx).query).get("tx")
        if not values:
            raise ValueError("the link names no login transaction")
        return values[0]
    return link_or_tx


async def fetch_login(idp: httpx.AsyncClient, link_or_tx: str) -> dict[str, Any]:
    """What to show the citizen: client names, claims asked, the display code, the challenge."""
    tx = transaction_id(link_or_tx)
    return dict(answer(await idp.get(f"/v1/login-transactions/{tx}"), "fetch-login"))


def signed_decision(
    credential: Credential, *, audience: str, tx: str, challenge: str | None, approve: bool = True
) -> str:
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    header = {"typ": TYP, "x5c": [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()]}
    claims: dict[str, Any] = {
        "aud": audience,
        "tx": tx,
        "decision": "approve" if approve else "deny",
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    if challenge is not None:
        claims["challenge"] = challenge
    return credential.key.sign_compact(header, claims)


async def decide_login(
    idp: httpx.AsyncClient, transaction: dict[str, Any], credential: Credential, *, approve: bool = True
) -> str:
    """Sign and send the decision on a fetched transaction; returns its new state."""
    return str((await send_login_decision(idp, transaction, credential, approve=approve))["state"])


async def send_login_decision(
    idp: httpx.AsyncClient, transaction: dict[str, Any], credential: Credential, *, approve: bool = True
) -> dict[str, Any]:
    """Sign and send the decision; the idp's answer ``{"tx", "state", "consent_request_id"?}``."""
    approval = signed_decision(
        credential,
        audience=transaction["audience"],
        tx=transaction["tx"],
        challenge=transaction["challenge"],
        approve=approve,
    )
    result = answer(
        await idp.post(f"/v1/login-transactions/{transaction['tx']}/decision", json={"approval": approval}),
        "decide-login",
    )
    return dict(result)


async def approve_login_with_consent(
    idp: httpx.AsyncClient,
    consent: httpx.AsyncClient,
    transaction: dict[str, Any],
    enrolled: Enrolled,
    choices: dict[str, bool],
    *,
    credential: Credential | None = None,
) -> dict[str, Any]:
    """Approve a fetched login (authentication key, or ``credential``) and, when it asks for data
    access, sign the consent decision item by item (``choices``: item → allow; absent = refuse)
    with the signing key. Answers ``{"state", "consent_request_id", "receipt"}`` (receipt: the
    consent service's answer to the signed decision, None without data access)."""
    answer = await send_login_decision(idp, transaction, credential or enrolled.authentication)
    request_id = answer.get("consent_request_id")
    receipt: dict[str, Any] | None = None
    if request_id:
        pending = await fetch_requests(consent, enrolled)
        request = next((r for r in pending if r["request_id"] == request_id), None)
        if request is None:
            raise WalletError("consent-request", 404, {"title": "the login's consent request is not pending"})
        receipt = await decide(consent, enrolled, request, choices)
    return {"state": answer["state"], "consent_request_id": request_id, "receipt": receipt}


async def fetch_inbox(idp: httpx.AsyncClient, credential: Credential, issuer: str) -> list[dict[str, Any]]:
    """The CIBA requests waiting for this person (a counter asked the idp to reach the citizen's
    wallet); each is a transaction to decide with :func:`decide_login`. The query is signed with
    ``credential`` (the authentication key) over ``tx`` ``"*"``."""
    query = signed_decision(credential, audience=issuer, tx="*", challenge=None)
    return list(answer(await idp.post("/v1/wallet/requests", json={"request": query}), "login-inbox"))
