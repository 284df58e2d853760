"""Dynamic opt-in in the wallet: fetch the consent requests waiting for this person, decide each
item, sign the decision with the phone's *signing* key (JWS over the RFC 8785 canonical statement,
signing certificate chain in ``x5c``), withdraw a grant, read grants, history and the exchange log.

    pending = await fetch_requests(consent, enrolled)
    receipt = await decide(consent, enrolled, pending[0], {"health.allergy": True})
    grants = await fetch_grants(consent, enrolled)
    await withdraw(consent, enrolled, receipt["decision_id"])
    log = await fetch_exchanges(consent, enrolled, limit=20)    # who received what, who was refused

Reads are signed with the authentication key. The wallet checks that the notice it shows hashes to
the request's ``notice_sha256`` before it signs — the statement names that hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.wallet.enroll import Credential, Enrolled, answer

DECISION_TYP = "tsunagu-consent-decision+jws"
QUERY_TYP = "tsunagu-consent-query+jwt"
AUDIENCE = "tsunagu-consent"


def _x5c(credential: Credential) -> list[str]:
    pems = [credential.certificate_pem, *credential.chain]
    return [
        base64.b64encode(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)).decode()
        for pem in pems
    ]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_query(credential: Credential, op: str, **claims: Any) -> str:
    """A read request signed with the authentication key (fresh ``iat``, single-use ``jti``)."""
    header = {"typ": QUERY_TYP, "x5c": _x5c(credential)[:1]}
    body = {
        "aud": AUDIENCE,
        "op": op,
        "iat": int(datetime.now(UTC).timestamp()),
        "jti": secrets.token_urlsafe(18),
    }
    return credential.key.sign_compact(header, {**body, **claims})


def sign_statement(credential: Credential, statement: dict[str, Any]) -> str:
    """The compact JWS of ``statement`` whose payload is its RFC 8785 canonical form."""
    canonical = rfc8785.dumps(statement)
    # The key signs json.dumps(claims) compactly, in insertion order: hand it the members in
    # canonical order, then make sure the payload is exactly the canonical bytes.
    token = credential.key.sign_compact({"typ": DECISION_TYP, "x5c": _x5c(credential)}, json.loads(canonical))
    segment = token.split(".")[1]
    if base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)) != canonical:
        raise ValueError("the statement does not serialise canonically (floats are not allowed)")
    return token


def notice_sha256(notice: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(notice)).hexdigest()


def decision_statement(
    request: dict[str, Any],
    choices: dict[str, bool],
    *,
    previous: str | None,
    supersedes: str | None = None,
    until: str | None = None,
    limits: dict[str, Any] | None = None,
    nonce: str | None = None,
    signed_at: str | None = None,
) -> dict[str, Any]:
    """The statement answering ``request``: every requested item allowed (True) or refused
    (False or absent — never a silent allow)."""
    if notice_sha256(request["notice"]) != request["notice_sha256"]:
        raise ValueError("the request's notice does not match its hash: do not sign it")
    requested = [entry["item"] for entry in request["items"]]
    return {
        "v": 1,
        "aud": AUDIENCE,
        "action": "decide",
        "request_id": request["request_id"],
        "recipient": request["recipient"],
        "purpose": request["purpose"],
        "items": {item: "allow" if choices.get(item) is True else "deny" for item in requested},
        "validity": {"from": request["validity"]["from"], "until": until or request["validity"]["until"]},
        "notice": {"version": request["notice"]["version"], "sha256": request["notice_sha256"]},
        "limits": limits,
        "nonce": nonce or secrets.token_urlsafe(24),
        "signed_at": signed_at or _now(),
        "previous": previous,
        "supersedes": supersedes,
    }


async def fetch_requests(consent: httpx.AsyncClient, enrolled: Enrolled) -> list[dict[str, Any]]:
    """The consent requests waiting for this person (what to show the citizen)."""
    body = {"request": signed_query(enrolled.authentication, "requests")}
    pending = answer(await consent.post("/v1/wallet/requests", json=body), "consent-requests")
    return list(pending["requests"])


async def submit(consent: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Send a signed decision; returns the platform's receipt (decision id, sequence, JWS)."""
    return dict(answer(await consent.post("/v1/decisions", json={"decision": token}), "consent-decision"))


async def decide(
    consent: httpx.AsyncClient,
    enrolled: Enrolled,
    request: dict[str, Any],
    choices: dict[str, bool],
    **options: Any,
) -> dict[str, Any]:
    """Answer a fetched request item by item; a decision already in force for the same recipient
    and purpose is superseded by this one (the newest answer counts)."""
    in_force = request.get("in_force") or []
    statement = decision_statement(
        request,
        choices,
        previous=request.get("previous"),
        supersedes=in_force[-1] if in_force else None,
        **options,
    )
    return await submit(consent, sign_statement(enrolled.signing, statement))


async def fetch_grants(consent: httpx.AsyncClient, enrolled: Enrolled) -> dict[str, Any]:
    body = {"request": signed_query(enrolled.authentication, "grants")}
    return dict(answer(await consent.post("/v1/wallet/grants", json=body), "consent-grants"))


async def fetch_history(consent: httpx.AsyncClient, enrolled: Enrolled) -> dict[str, Any]:
    body = {"request": signed_query(enrolled.authentication, "history")}
    return dict(answer(await consent.post("/v1/wallet/history", json=body), "consent-history"))


async def fetch_export(consent: httpx.AsyncClient, enrolled: Enrolled, decision_id: str) -> dict[str, Any]:
    body = {"request": signed_query(enrolled.authentication, "export", decision_id=decision_id)}
    return dict(answer(await consent.post("/v1/wallet/export", json=body), "consent-export"))


async def fetch_exchanges(
    consent: httpx.AsyncClient, enrolled: Enrolled, *, limit: int | None = None, before: str | None = None
) -> dict[str, Any]:
    """One page of this person's exchange log, newest first: ``{"exchanges", "next_before",
    "names"}``; pass ``next_before`` back as ``before`` for the next page. Read by consent from
    the broker for the person the authentication certificate belongs to."""
    page = {key: value for key, value in (("limit", limit), ("before", before)) if value is not None}
    body = {"request": signed_query(enrolled.authentication, "exchanges", **page)}
    return dict(answer(await consent.post("/v1/wallet/exchanges", json=body), "consent-exchanges"))


def withdrawal_statement(decision: dict[str, Any], *, previous: str | None) -> dict[str, Any]:
    """The statement withdrawing ``decision`` (an entry of the history): every item denied."""
    return {
        "v": 1,
        "aud": AUDIENCE,
        "action": "withdraw",
        "request_id": None,
        "recipient": decision["recipient"],
        "purpose": decision["purpose"],
        "items": dict.fromkeys(decision["items"], "deny"),
        "validity": {"from": _now(), "until": decision["valid_until"]},
        "notice": None,
        "limits": None,
        "nonce": secrets.token_urlsafe(24),
        "signed_at": _now(),
        "previous": previous,
        "supersedes": decision["decision_id"],
    }


async def withdraw(consent: httpx.AsyncClient, enrolled: Enrolled, decision_id: str) -> dict[str, Any]:
    """Withdraw a decision: a new signed decision that supersedes it, effective at once."""
    history = (await fetch_history(consent, enrolled))["decisions"]
    target = next((entry for entry in history if entry["decision_id"] == decision_id), None)
    if target is None:
        raise ValueError("no such decision in this person's history")
    same_recipient = [entry for entry in history if entry["recipient"] == target["recipient"]]
    previous = same_recipient[-1]["decision_sha256"] if same_recipient else None
    statement = withdrawal_statement(target, previous=previous)
    return await submit(consent, sign_statement(enrolled.signing, statement))
