"""Consent requests: a recipient asks a person for items, for a purpose, for a period.

The request fixes the *notice* the wallet shows — recipient, purpose (ja/en), each item with its
name and whether it is required or special-care, validity, limits, notice version — as one JSON
document; the citizen's signed statement names that document's SHA-256 (RFC 8785), so the record
says exactly what the citizen was shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tsunagu.consent.domain.catalog import CATALOG
from tsunagu.consent.domain.context import ConsentContext, rfc3339
from tsunagu.consent.domain.errors import InvalidConsentRequest, UnknownItem, UnknownRecipient
from tsunagu.consent.domain.jcs_rfc8785 import canonical, sha256_hex
from tsunagu.consent.domain.statement import Limits, Purpose
from tsunagu.consent.store import repository as store
from tsunagu.events.schemas.consent import ConsentRequestCreatedV1


@dataclass(frozen=True)
class RequestedItem:
    item: str
    required: bool


@dataclass(frozen=True)
class NewRequest:
    user_number: str
    recipient: str
    items: list[RequestedItem]
    purpose: Purpose
    valid_until: datetime
    valid_from: datetime | None = None
    notice_version: str = "1"
    limits: Limits | None = None
    purpose_dpv: str | None = None
    answer_within_s: int | None = None


def notice_document(
    request: NewRequest, recipient: dict[str, Any], valid_from: datetime, valid_until: datetime
) -> dict[str, Any]:
    return {
        "version": request.notice_version,
        "recipient": {
            "id": recipient["id"],
            "name_ja": recipient["name_ja"],
            "name_en": recipient["name_en"],
        },
        "purpose": request.purpose.model_dump(),
        "items": [
            {
                "item": entry.item,
                "required": entry.required,
                "name_ja": CATALOG[entry.item].name_ja,
                "name_en": CATALOG[entry.item].name_en,
                "special_care": CATALOG[entry.item].special_care,
            }
            for entry in request.items
        ],
        "validity": {"from": rfc3339(valid_from), "until": rfc3339(valid_until)},
        "limits": request.limits.model_dump() if request.limits else None,
    }


def notice_sha256(notice: dict[str, Any]) -> str:
    return sha256_hex(canonical(notice))


class ConsentRequests:
    def __init__(self, context: ConsentContext) -> None:
        self.context = context

    async def create(self, request: NewRequest, created_by: str) -> dict[str, Any]:
        """Validate and store a request; ``consent.request.created`` in the same transaction."""
        context = self.context
        now = context.clock().replace(microsecond=0)
        names = [entry.item for entry in request.items]
        unknown = sorted(set(names) - set(CATALOG))
        if unknown:
            raise UnknownItem(f"not in the catalog: {', '.join(unknown)}")
        if not names or len(set(names)) != len(names):
            raise InvalidConsentRequest("items must be one or more distinct catalog ids")
        valid_from = (request.valid_from or now).replace(microsecond=0)
        valid_until = request.valid_until.replace(microsecond=0)
        if valid_until <= max(valid_from, now):
            raise InvalidConsentRequest("validity must end after it starts and in the future")
        if valid_until - valid_from > timedelta(days=context.policy.max_validity_days):
            raise InvalidConsentRequest(f"validity is at most {context.policy.max_validity_days} days")
        answer_by = min(
            now + timedelta(seconds=request.answer_within_s or context.policy.request_ttl_s), valid_until
        )
        request_id = context.ids()
        async with context.db.transaction() as session:
            recipient = await store.recipient_row(session, request.recipient)
            if recipient is None:
                raise UnknownRecipient(f"{request.recipient!r} is not registered")
            notice = notice_document(request, recipient, valid_from, valid_until)
            digest = notice_sha256(notice)
            row = {
                "id": request_id,
                "user_number": request.user_number,
                "recipient_id": request.recipient,
                "purpose_code": request.purpose.code,
                "purpose_ja": request.purpose.ja,
                "purpose_en": request.purpose.en,
                "purpose_dpv": request.purpose_dpv,
                "items": [{"item": e.item, "required": e.required} for e in request.items],
                "valid_from": valid_from,
                "valid_until": valid_until,
                "limits": notice["limits"],
                "notice": notice,
                "notice_version": request.notice_version,
                "notice_sha256": digest,
                "state": "pending",
                "decision_id": None,
                "created_by": created_by,
                "created_at": now,
                "answer_by": answer_by,
            }
            await store.add_request(session, row)
            await context.outbox.add(
                session,
                ConsentRequestCreatedV1(
                    user_number=request.user_number,
                    request_id=request_id,
                    recipient=request.recipient,
                    purpose_code=request.purpose.code,
                    items=names,
                    required=[e.item for e in request.items if e.required],
                    valid_from=valid_from,
                    valid_until=valid_until,
                    answer_by=answer_by,
                    notice_sha256=digest,
                    created_by=created_by,
                ),
            )
        return view(row)

    async def register_recipient(self, recipient_id: str, name_ja: str, name_en: str, by: str) -> bool:
        """Register (or rename) a recipient; True when it is new."""
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", recipient_id):
            raise InvalidConsentRequest("a recipient id is 1–64 of A–Z a–z 0–9 . _ : -")
        async with self.context.db.transaction() as session:
            return await store.save_recipient(
                session,
                {
                    "id": recipient_id,
                    "name_ja": name_ja,
                    "name_en": name_en,
                    "registered_by": by,
                    "created_at": self.context.clock(),
                },
            )

    async def get(self, request_id: str) -> dict[str, Any] | None:
        async with self.context.db.sessions() as session:
            row = await store.request_row(session, request_id)
        return view(row) if row else None


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A request as the API and the wallet see it."""
    return {
        "request_id": row["id"],
        "user_number": row["user_number"],
        "recipient": row["recipient_id"],
        "purpose": {"code": row["purpose_code"], "ja": row["purpose_ja"], "en": row["purpose_en"]},
        "purpose_dpv": row["purpose_dpv"],
        "items": row["items"],
        "validity": {"from": rfc3339(row["valid_from"]), "until": rfc3339(row["valid_until"])},
        "limits": row["limits"],
        "notice": row["notice"],
        "notice_sha256": row["notice_sha256"],
        "state": row["state"],
        "decision_id": row["decision_id"],
        "created_at": rfc3339(row["created_at"]),
        "answer_by": rfc3339(row["answer_by"]),
    }
