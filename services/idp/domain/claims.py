"""Which claims a relying party receives about a person, and their values.

A claim beyond ``sub`` is released only when both hold:
1. the client asked for it — scope ``profile`` (name, birthdate, gender), ``address`` (address),
   or the OIDC ``claims`` request parameter for the ID token or userinfo (``verified_claims``
   only through ``claims``); and
2. the citizen's consent for that client and item is in force now, as the consent service
   answers (:class:`ConsentGate`). Without a consent service every such claim is withheld.

Values are read from jlis-sync at release time (the idp keeps no personal data). ``user_number``
goes only to clients registered with a legal basis, and needs no consent (the basis is the law).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol

from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.internal import UpstreamError
from tsunagu.clients.jlis_sync import JlisSyncClient

log = logging.getLogger(__name__)

Target = Literal["id_token", "userinfo"]

# Consent items (the broker's catalog ids) behind each claim.
CLAIM_ITEMS: dict[str, str] = {
    "name": "resident.name",
    "address": "resident.address",
    "birthdate": "resident.birth_date",
    "gender": "resident.sex",
}
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "birthdate", "gender"),
    "address": ("address",),
}
RELEASABLE = frozenset([*CLAIM_ITEMS, "verified_claims", "user_number"])
TRUST_FRAMEWORK = "jp_my_number_card"
# JIS X 0303 / ISO 5218 sex codes as J-LIS records them → OIDC gender strings.
_GENDER = {"1": "male", "2": "female", "0": "unknown", "9": "not applicable"}


def requested_claims(
    scope: Iterable[str], claims_parameter: Mapping[str, Any] | None, target: Target
) -> set[str]:
    """Claim names the client asked for, for this target (scope claims go to userinfo only when
    an access token is issued, per OIDC Core §5.4 — and to the ID token otherwise; we follow the
    common practice of releasing scope claims at userinfo and ``claims`` members where asked)."""
    names: set[str] = set()
    if target == "userinfo":
        for value in scope:
            names.update(SCOPE_CLAIMS.get(value, ()))
    if claims_parameter:
        section = claims_parameter.get(target)
        if isinstance(section, Mapping):
            names.update(str(name) for name in section)
    return names & RELEASABLE


class ConsentGate(Protocol):
    async def allowed(self, user_number: str, client_id: str, items: list[str], at: datetime) -> set[str]:
        """The items whose release to ``client_id`` the citizen's consent allows at ``at``."""
        ...


class DenyAllConsent:
    """No consent service configured: nothing beyond ``sub`` leaves (deny by default)."""

    async def allowed(self, user_number: str, client_id: str, items: list[str], at: datetime) -> set[str]:
        return set()


class ConsentServiceGate:
    """Effective consent from services/consent (``POST /internal/v1/effective``, purpose
    ``login``); an item counts as allowed only on an explicit ``allow``."""

    def __init__(self, api: ConsentApi) -> None:
        self.api = api

    async def allowed(self, user_number: str, client_id: str, items: list[str], at: datetime) -> set[str]:
        if not items:
            return set()
        try:
            decisions = await self.api.effective(user_number, client_id, items, "login", at)
        except UpstreamError as error:
            # Fail closed: an unreachable or refusing consent service releases nothing.
            log.warning("consent service refused the check; claims withheld", extra={"status": error.status})
            return set()
        return {item for item, decision in decisions.items() if decision == "allow"}


@dataclass(frozen=True)
class ReleaseContext:
    client_id: str
    user_number_legal_basis: str | None
    user_number: str
    proofed_at: datetime | None  # when the person proved the card (verified_claims evidence)


class ClaimsRelease:
    def __init__(self, jlis: JlisSyncClient | None, consent: ConsentGate) -> None:
        self.jlis = jlis
        self.consent = consent

    async def release(self, context: ReleaseContext, wanted: set[str], at: datetime) -> dict[str, Any]:
        """The claims (other than ``sub``) to put in an ID token or userinfo answer."""
        claims: dict[str, Any] = {}
        if "user_number" in wanted and context.user_number_legal_basis:
            claims["user_number"] = context.user_number
        personal = sorted(wanted & (set(CLAIM_ITEMS) | {"verified_claims"}))
        if not personal:
            return claims
        items = sorted(
            {CLAIM_ITEMS[name] for name in personal if name in CLAIM_ITEMS}
            | (set(CLAIM_ITEMS.values()) if "verified_claims" in personal else set())
        )
        allowed = await self.consent.allowed(context.user_number, context.client_id, items, at)
        if not allowed or self.jlis is None:
            return claims
        resident = await self.jlis.resident(context.user_number)
        if resident is None:
            return claims
        values = _values(resident)
        released = {
            name: values[name] for name in CLAIM_ITEMS if name in personal and CLAIM_ITEMS[name] in allowed
        }
        claims.update(released)
        if "verified_claims" in personal:
            verified = {name: values[name] for name in CLAIM_ITEMS if CLAIM_ITEMS[name] in allowed}
            if verified:
                claims["verified_claims"] = {
                    "verification": {
                        "trust_framework": TRUST_FRAMEWORK,
                        "time": (context.proofed_at or at).isoformat(),
                        "evidence": [
                            {
                                "type": "electronic_signature",
                                "signature_type": "jpki",
                                "issuer": "J-LIS",
                                "serial_number_presented": False,
                                "created_at": (context.proofed_at or at).isoformat(),
                            }
                        ],
                    },
                    "claims": verified,
                }
        return claims


def _values(resident: Mapping[str, Any]) -> dict[str, Any]:
    birth = resident.get("birth_date")
    return {
        "name": resident.get("name"),
        "address": {"formatted": resident.get("address"), "country": "JP"},
        "birthdate": birth.isoformat() if isinstance(birth, date) else birth,
        "gender": _GENDER.get(str(resident.get("sex")), "unknown"),
    }
