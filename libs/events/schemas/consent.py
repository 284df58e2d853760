"""Events of services/consent: consent requests created and signed decisions recorded.

Keyed by user identification number, so one citizen's decisions keep their order. A recorded
decision carries the full signed statement (compact JWS with the signing certificate chain) and the
platform's receipt, so an auditor can verify every decision from the event stream alone. No data
item values ever travel here — only which items were allowed or refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from tsunagu.events.registry import EventSchema
from tsunagu.events.schemas import registry


class _PersonKeyed(EventSchema):
    version: ClassVar[int] = 1

    user_number: str

    def partition_key(self) -> str | None:
        return self.user_number

    def subject(self) -> str | None:
        return self.user_number


@registry.register
class ConsentRequestCreatedV1(_PersonKeyed):
    topic: ClassVar[str] = "tsunagu.consent.request"
    event_type: ClassVar[str] = "tsunagu.consent.request.created"

    request_id: str
    recipient: str
    purpose_code: str
    items: list[str]
    required: list[str]
    valid_from: datetime
    valid_until: datetime
    answer_by: datetime
    notice_sha256: str
    created_by: str  # the calling service


@registry.register
class ConsentDecisionRecordedV1(_PersonKeyed):
    topic: ClassVar[str] = "tsunagu.consent.decision"
    event_type: ClassVar[str] = "tsunagu.consent.decision.recorded"

    decision_id: str
    sequence: int  # the citizen's n-th decision (gapless per citizen)
    action: Literal["decide", "withdraw"]
    event: Literal["given", "refused", "partially-given", "withdrawn"]
    recipient: str
    purpose_code: str
    request_id: str | None
    supersedes: str | None
    items: dict[str, Literal["allow", "deny"]]
    effective_from: datetime
    valid_until: datetime
    signed_at: datetime
    recorded_at: datetime
    certificate_serial: str
    decision_sha256: str  # SHA-256 (hex) of the compact JWS below, as ASCII
    previous_sha256: str | None
    statement_jws: str
    receipt_jws: str
    receipt_kid: str
