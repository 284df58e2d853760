"""A stored decision seen as an ISO/IEC TS 27560:2023 consent record, with W3C DPV terms.

The evidence itself (the signed statement, the CA's answer, the receipt) is stored unchanged; this
is a view built from it on export and in the citizen's history, so the mapping can improve without
touching a record. The mapping, field by field, is in services/consent/README.md.
"""

from __future__ import annotations

from typing import Any

from tsunagu.consent.domain.catalog import CATALOG
from tsunagu.consent.domain.statement import Statement

CONTROLLER = {"id": "tsunagu", "name_ja": "つなぐ 地域デジタルID基盤", "name_en": "Tsunagu platform"}
JURISDICTION = "JP"
LEGAL_BASIS = "dpv:Consent"


def event_type(statement: Statement) -> str:
    """The 27560 event this decision is: given, refused, partially given (our addition), withdrawn."""
    if statement.action == "withdraw":
        return "withdrawn"
    allowed, denied = statement.allowed(), statement.denied()
    if allowed and denied:
        return "partially-given"
    return "given" if allowed else "refused"


def record(row: dict[str, Any], statement: Statement, recipient: dict[str, Any] | None) -> dict[str, Any]:
    items = sorted(statement.items)
    special = any(CATALOG[item].special_care for item in items if item in CATALOG)
    return {
        "schema": "ISO/IEC TS 27560:2023 + dpv 2 (tsunagu profile 1)",
        "header": {
            "record_id": row["id"],
            "version": 1,
            "created": row["recorded_at"].isoformat(),
            "data_subject": {"user_number": row["user_number"]},
            "supersedes": statement.supersedes,
            "request_id": statement.request_id,
        },
        "parties": {
            "controller": CONTROLLER,
            "recipient": {
                "id": statement.recipient,
                "name_ja": recipient["name_ja"] if recipient else None,
                "name_en": recipient["name_en"] if recipient else None,
            },
        },
        "processing": {
            "purpose": {
                "code": statement.purpose.code,
                "ja": statement.purpose.ja,
                "en": statement.purpose.en,
            },
            "personal_data": [
                {
                    "item": item,
                    "dpv": CATALOG[item].dpv_category if item in CATALOG else None,
                    "special_category": CATALOG[item].special_care if item in CATALOG else False,
                    "decision": statement.items[item],
                }
                for item in items
            ],
            "legal_basis": "dpv:ExplicitlyExpressedConsent" if special else LEGAL_BASIS,
            "jurisdiction": JURISDICTION,
            "limits": statement.limits.model_dump() if statement.limits else None,
        },
        "notice": statement.notice.model_dump() if statement.notice else None,
        "event": {
            "type": event_type(statement),
            "method": "signed in the wallet (JWS, signing certificate)",
            "signed_at": statement.signed_at,
            "recorded_at": row["recorded_at"].isoformat(),
            "valid_from": row["effective_from"].isoformat(),
            "valid_until": row["valid_until"].isoformat(),
        },
        "evidence": {
            "decision_sha256": row["decision_sha256"],
            "previous_sha256": None if row["previous_sha256"] == "genesis" else row["previous_sha256"],
            "certificate_serial": row["certificate_serial"],
            "receipt_kid": row["receipt_kid"],
            "sequence": row["sequence"],
        },
    }
