"""Approve (or decline) a login in the wallet: the QR code / app link names a transaction at an
issuer; the wallet shows who asks and for what, and signs its decision with the phone's
authentication key (or the per-app key of that relying party's app).

    tx = await fetch_login(idp, "tsunagu://login?tx=…&issuer=…")   # or the tx id
    await decide_login(idp, tx, enrolled.authentication, approve=True)
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

from tsunagu.wallet.enroll import Credential, WalletError

TYP = "tsunagu-login+jwt"


def transaction_id(link_or_tx: str) -> str:
    """The transaction id from a ``tsunagu://login?tx=…`` link (or the id itself)."""
    if link_or_tx.startswith("tsunagu://"):
        values = parse_qs(urlparse(link_or_tx).query).get("tx")
        if not values:
            raise ValueError("the link names no login transaction")
        return values[0]
    return link_or_tx


async def _json(response: httpx.Response, step: str) -> Any:
    if response.is_error:
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase}
        raise WalletError(step, response.status_code, problem)
    return response.json()


async def fetch_login(idp: httpx.AsyncClient, link_or_tx: str) -> dict[str, Any]:
    """What to show the citizen: client names, claims asked, the display code, the challenge."""
    tx = transaction_id(link_or_tx)
    return dict(await _json(await idp.get(f"/v1/login-transactions/{tx}"), "fetch-login"))


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
    approval = signed_decision(
        credential,
        audience=transaction["audience"],
        tx=transaction["tx"],
        challenge=transaction["challenge"],
        approve=approve,
    )
    result = await _json(
        await idp.post(f"/v1/login-transactions/{transaction['tx']}/decision", json={"approval": approval}),
        "decide-login",
    )
    return str(result["state"])
