"""Data access asked in the login (RFC 9396 ``authorization_details``, type ``tsunagu_data_access``)
and decided by the citizen's signed consent (services/consent).

- :meth:`DataAccess.validate` checks an entry against consent's catalog (cached) and normalises it:
  items, ``required``, purpose ``{code, ja, en}``, validity (``until`` or a ``period``).
- :meth:`DataAccess.ask` — once the wallet approved the login and the person is known — registers
  the client as consent recipient and creates the consent request; returns its id.
- :meth:`DataAccess.outcome` reads the request back: pending, or answered with the decision id and
  the items consent allows now (the grant's ``authorization_details``).
- :meth:`DataAccess.effective` answers the grant-management query: the decisions in force now.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx

from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.internal import UpstreamError
from tsunagu.errors import ServiceUnavailable

log = logging.getLogger(__name__)

TYPE = "tsunagu_data_access"
# Purposes an RP may name by code alone: the citizen always sees a Japanese and English text.
PURPOSES: dict[str, dict[str, str]] = {
    "treatment": {"code": "treatment", "ja": "診療のため", "en": "For treatment"},
    "care": {"code": "care", "ja": "介護・福祉サービスのため", "en": "For care and welfare services"},
    "service": {"code": "service", "ja": "サービスの提供のため", "en": "To provide the service"},
}
DEFAULT_PERIOD_DAYS = 365
MAX_PERIOD_DAYS = 5 * 365
CATALOG_CACHE_S = 300.0
_PURPOSE_CODE = re.compile(r"^[a-z0-9._-]{1,64}$")
_PERIOD = re.compile(r"^P(\d{1,4})([DY])$")
_FAILURES = (UpstreamError, httpx.HTTPError, OSError)
_ENTRY_KEYS = frozenset({"type", "items", "required", "purpose", "validity", "period"})


class DetailsInvalid(ValueError):
    """The ``authorization_details`` cannot be granted (``invalid_authorization_details``)."""


class CatalogUnavailable(Exception):
    """Consent's catalog could not be read (``temporarily_unavailable``)."""


class ConsentUnavailable(ServiceUnavailable):
    code = "consent-unavailable"
    title = "the consent service cannot take the data-access request now; try again"


@dataclass(frozen=True)
class Outcome:
    state: Literal["pending", "answered"]
    consent_id: str | None = None
    details: list[dict[str, Any]] | None = None  # the grant's authorization_details (answered)


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise DetailsInvalid("validity times are RFC 3339 strings")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DetailsInvalid("validity times are RFC 3339 strings") from None
    if parsed.tzinfo is None:
        raise DetailsInvalid("validity times need a time zone")
    return parsed


def _rfc3339(value: datetime) -> str:
    return value.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _purpose(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        known = PURPOSES.get(value)
        if known is None:
            raise DetailsInvalid("purpose must be {code, ja, en} or a known purpose code")
        return dict(known)
    if not isinstance(value, dict) or set(value) != {"code", "ja", "en"}:
        raise DetailsInvalid("purpose must be {code, ja, en} or a known purpose code")
    code, ja, en = value["code"], value["ja"], value["en"]
    if not isinstance(code, str) or not _PURPOSE_CODE.match(code):
        raise DetailsInvalid("purpose code is 1–64 of a–z 0–9 . _ -")
    for text in (ja, en):
        if not isinstance(text, str) or not 0 < len(text) <= 500:
            raise DetailsInvalid("purpose texts (ja, en) are 1–500 characters")
    return {"code": code, "ja": ja, "en": en}


def _validity(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``{"validity": {"from"?, "until"}}`` (absolute) or ``{"period_days"}`` (resolved to an
    absolute end when the wallet approves)."""
    if "validity" in entry and "period" in entry:
        raise DetailsInvalid("give validity or period, not both")
    if "validity" in entry:
        validity = entry["validity"]
        if (
            not isinstance(validity, dict)
            or not set(validity) <= {"from", "until"}
            or "until" not in validity
        ):
            raise DetailsInvalid("validity is {from?, until}")
        until = _parse_time(validity["until"])
        start = _parse_time(validity["from"]) if "from" in validity else now
        if until <= max(start, now) or until - start > timedelta(days=MAX_PERIOD_DAYS):
            raise DetailsInvalid(f"validity must end in the future, at most {MAX_PERIOD_DAYS} days long")
        resolved = {"until": _rfc3339(until)}
        if "from" in validity:
            resolved["from"] = _rfc3339(start)
        return {"validity": resolved}
    period = entry.get("period", f"P{DEFAULT_PERIOD_DAYS}D")
    match = _PERIOD.match(period) if isinstance(period, str) else None
    if match is None:
        raise DetailsInvalid("period is an ISO 8601 duration in days or years (P90D, P1Y)")
    days = int(match.group(1)) * (365 if match.group(2) == "Y" else 1)
    if not 0 < days <= MAX_PERIOD_DAYS:
        raise DetailsInvalid(f"period is 1 to {MAX_PERIOD_DAYS} days")
    return {"period_days": days}


class DataAccess:
    def __init__(self, api: ConsentApi | None, clock: Any = time.monotonic) -> None:
        self.api = api
        self._monotonic = clock
        self._catalog: dict[str, dict[str, str]] | None = None
        self._catalog_at = 0.0
        self._recipients: dict[str, tuple[str, str]] = {}

    @property
    def enabled(self) -> bool:
        return self.api is not None

    async def load_catalog(self) -> None:
        """Refresh the cached catalog when older than ``CATALOG_CACHE_S`` (a failure keeps the old)."""
        if self.api is None:
            return
        if self._catalog is not None and self._monotonic() - self._catalog_at < CATALOG_CACHE_S:
            return
        try:
            self._catalog = await self.api.catalog()
            self._catalog_at = self._monotonic()
        except (*_FAILURES, KeyError, TypeError, ValueError) as error:
            log.warning("consent catalog unavailable", extra={"error": type(error).__name__})

    def item_names(self, locale: str) -> dict[str, str]:
        """Item id → name in ``locale`` (ja or en) from the cached catalog (ids when unknown)."""
        language = "en" if locale.startswith("en") else "ja"
        return {item: names[language] for item, names in (self._catalog or {}).items()}

    def validate(self, details: list[Any], now: datetime) -> list[dict[str, Any]]:
        """The normalised entries; :class:`DetailsInvalid` or :class:`CatalogUnavailable`."""
        if not details:
            raise DetailsInvalid("authorization_details is empty")
        if len(details) > 1:
            raise DetailsInvalid("one tsunagu_data_access entry per request")
        entry = details[0]
        if not isinstance(entry, dict) or entry.get("type") != TYPE:
            raise DetailsInvalid("unsupported authorization_details type")
        unknown_keys = set(entry) - _ENTRY_KEYS
        if unknown_keys:
            raise DetailsInvalid(f"unsupported member: {sorted(unknown_keys)[0][:40]}")
        items = entry.get("items")
        if (
            not isinstance(items, list)
            or not 0 < len(items) <= 50
            or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in items)
            or len(set(items)) != len(items)
        ):
            raise DetailsInvalid("items must be a list of distinct data item ids")
        required = entry.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(items):
            raise DetailsInvalid("required must list some of the items")
        purpose = _purpose(entry.get("purpose"))
        validity = _validity(entry, now)
        if self.api is None:
            raise DetailsInvalid("data access cannot be granted: no consent service")
        if self._catalog is None:
            raise CatalogUnavailable()
        unknown = sorted(set(items) - set(self._catalog))
        if unknown:
            raise DetailsInvalid(f"not in the data catalog: {', '.join(unknown)[:200]}")
        return [
            {
                "type": TYPE,
                "items": list(items),
                "required": [i for i in items if i in required],
                "purpose": purpose,
                **validity,
            }
        ]

    async def ask(
        self,
        *,
        client: Any,
        user_number: str,
        details: list[dict[str, Any]],
        now: datetime,
        answer_by: datetime,
    ) -> str:
        """Register the recipient and create the consent request; its id. ``ConsentUnavailable``."""
        assert self.api is not None
        entry = details[0]
        names = (client.display_name("ja"), client.display_name("en"))
        try:
            if self._recipients.get(client.client_id) != names:
                await self.api.register_recipient(client.client_id, names[0][:200], names[1][:200])
                self._recipients[client.client_id] = names
            created = await self.api.create_request(
                {
                    "user_number": user_number,
                    "recipient": client.client_id,
                    "items": [{"item": i, "required": i in entry["required"]} for i in entry["items"]],
                    "purpose": entry["purpose"],
                    "validity": _request_validity(entry, now),
                    "answer_within_s": max(1, int((answer_by - now).total_seconds())),
                }
            )
        except _FAILURES as error:
            status = getattr(error, "status", None)
            log.warning("consent refused the data-access request", extra={"status": status})
            raise ConsentUnavailable("the consent service did not take the request") from None
        return str(created["request_id"])

    async def answered(self, request_id: str | None) -> bool:
        """Whether the consent request has its decision (an unreachable consent: not yet)."""
        if self.api is None or not request_id:
            return False
        try:
            request = await self.api.get_request(request_id)
        except _FAILURES:
            return False
        return request.get("state") == "answered" and bool(request.get("decision_id"))

    async def outcome(
        self,
        request_id: str,
        *,
        details: list[dict[str, Any]],
        user_number: str,
        client_id: str,
        now: datetime,
    ) -> Outcome:
        """Pending, or answered: the decision id and the grant's enriched authorization_details."""
        assert self.api is not None
        try:
            request = await self.api.get_request(request_id)
        except _FAILURES:
            log.warning("consent request unreadable; the login waits", extra={"request_id": request_id})
            return Outcome("pending")
        if request.get("state") != "answered" or not request.get("decision_id"):
            return Outcome("pending")
        entry = details[0]
        try:
            decisions = await self.api.effective(
                user_number, client_id, list(entry["items"]), entry["purpose"]["code"], now
            )
        except _FAILURES:
            # Fail closed: the login goes on, with no data access recorded as allowed.
            decisions = dict.fromkeys(entry["items"], "deny")
        allowed = [i for i in entry["items"] if decisions.get(i) == "allow"]
        granted = {
            "type": TYPE,
            "items": allowed,
            "refused_items": [i for i in entry["items"] if i not in allowed],
            "required": list(entry["required"]),
            "purpose": entry["purpose"],
            "validity": request.get("validity"),
            "consent_id": str(request["decision_id"]),
        }
        return Outcome("answered", str(request["decision_id"]), [granted])

    async def effective(
        self, *, user_number: str, client_id: str, details: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """The grant's entries with the decisions in force now (deny when consent cannot answer)."""
        answered: list[dict[str, Any]] = []
        for entry in details:
            asked = [*entry.get("items", []), *entry.get("refused_items", [])]
            decisions: dict[str, str] = dict.fromkeys(asked, "deny")
            if self.api is not None and asked:
                try:
                    decisions = await self.api.effective(
                        user_number, client_id, asked, entry["purpose"]["code"], now
                    )
                except _FAILURES:
                    log.warning("consent effective check failed; reported as deny")
            answered.append(
                {
                    **entry,
                    "items": [i for i in asked if decisions[i] == "allow"],
                    "refused_items": [i for i in asked if decisions[i] != "allow"],
                    "decisions": decisions,
                }
            )
        return answered


def _request_validity(entry: dict[str, Any], now: datetime) -> dict[str, str]:
    if isinstance(entry.get("validity"), dict):
        return dict(entry["validity"])
    return {"until": _rfc3339(now + timedelta(days=int(entry["period_days"])))}
