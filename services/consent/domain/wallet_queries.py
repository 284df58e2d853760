"""The wallet's signed calls to read its own consent state (pending requests, grants, history,
exports) and its exchange log: a compact JWS with the phone's *authentication* certificate in ``x5c``, payload
``{"aud": "tsunagu-consent", "op", "iat", "jti", …}``. Fresh (``iat``), single use (``jti``, by
the caller's transaction) and answered only for the person the CA says holds the certificate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tsunagu.clients.ca import CaClient
from tsunagu.consent.domain import certificates, jws_rfc7515
from tsunagu.consent.domain.errors import MalformedStatement, StaleSignature

QUERY_TYP = "tsunagu-consent-query+jwt"
OPERATIONS = ("requests", "grants", "history", "export", "exchanges")
SKEW_S = 30


@dataclass(frozen=True)
class VerifiedQuery:
    op: str
    user_number: str
    certificate_serial: str
    jti: str
    claims: dict[str, Any]


async def verify(token: str, *, op: str, ca: CaClient, now: datetime, max_age_s: int) -> VerifiedQuery:
    parsed = jws_rfc7515.parse(token, QUERY_TYP)
    jws_rfc7515.verify_signature(parsed)
    try:
        claims = json.loads(parsed.payload)
    except ValueError:
        raise MalformedStatement("the query payload is not JSON") from None
    if not isinstance(claims, dict):
        raise MalformedStatement("the query payload is not a JSON object")
    if claims.get("aud") != "tsunagu-consent":
        raise MalformedStatement("aud must be tsunagu-consent")
    if claims.get("op") != op:
        raise MalformedStatement(f"op must be {op}")
    issued = claims.get("iat")
    if not isinstance(issued, int) or isinstance(issued, bool):
        raise MalformedStatement("iat is required")
    stamp = int(now.timestamp())
    if issued > stamp + SKEW_S or issued < stamp - max_age_s:
        raise StaleSignature("the signed query is not fresh (iat)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128:
        raise MalformedStatement("jti is required (16–128 characters)")
    holder = await certificates.holder(ca, parsed.chain, kind="authentication", at=now, now=now)
    return VerifiedQuery(op, holder.user_number, holder.serial, jti, claims)
