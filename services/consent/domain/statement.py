"""The decision statement a citizen signs: its schema, and how it is read from a JWS payload.

    {"v": 1, "aud": "tsunagu-consent", "action": "decide" | "withdraw",
     "request_id": "…" | null, "recipient": "hospital-a",
     "purpose": {"code": "treatment", "ja": "…", "en": "…"},
     "items": {"health.allergy": "allow", "resident.address": "deny"},
     "validity": {"from": "2026-…Z", "until": "2027-…Z"},
     "notice": {"version": "1", "sha256": "<hex>"} | null,
     "limits": {"max_per_day": 10, "max_records": null, "onward_transfer": false} | null,
     "nonce": "<16–128 chars>", "signed_at": "2026-…Z",
     "previous": "<hex SHA-256 of the citizen's latest decision JWS for this recipient>" | null,
     "supersedes": "<decision id>" | null}

The JWS payload must be exactly the RFC 8785 canonical form of this object. There is no user
identification number in it on purpose: who signed is what the CA says about the certificate.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from tsunagu.consent.domain.errors import MalformedStatement, NotCanonical
from tsunagu.consent.domain.jcs_rfc8785 import is_canonical

AUDIENCE = "tsunagu-consent"
DECISION_TYP = "tsunagu-consent-decision+jws"
MAX_ITEMS = 50
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ID = r"^[A-Za-z0-9._:-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Purpose(_Strict):
    code: str = Field(pattern=r"^[a-z0-9._-]{1,64}$")
    ja: str = Field(min_length=1, max_length=2000)
    en: str = Field(min_length=1, max_length=2000)


class Validity(_Strict):
    valid_from: str = Field(alias="from", max_length=40)
    until: str = Field(max_length=40)


class Notice(_Strict):
    version: str = Field(min_length=1, max_length=32)
    sha256: str = Field(pattern=HEX64.pattern)


class Limits(_Strict):
    """Optional limits beyond ISO/IEC TS 27560: how often, how much, and no onward transfer."""

    max_per_day: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    max_records: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    onward_transfer: StrictBool = False


class Statement(_Strict):
    v: Literal[1]
    aud: Literal["tsunagu-consent"]
    action: Literal["decide", "withdraw"]
    request_id: str | None = Field(pattern=ID)
    recipient: str = Field(pattern=ID)
    purpose: Purpose
    items: dict[str, Literal["allow", "deny"]] = Field(min_length=1, max_length=MAX_ITEMS)
    validity: Validity
    notice: Notice | None
    limits: Limits | None = None
    nonce: str = Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")
    signed_at: str = Field(max_length=40)
    previous: str | None = Field(pattern=HEX64.pattern)
    supersedes: str | None = Field(pattern=ID)

    @property
    def signed_time(self) -> datetime:
        return parse_time(self.signed_at, "signed_at")

    @property
    def valid_from(self) -> datetime:
        return parse_time(self.validity.valid_from, "validity.from")

    @property
    def valid_until(self) -> datetime:
        return parse_time(self.validity.until, "validity.until")

    def allowed(self) -> list[str]:
        return sorted(item for item, value in self.items.items() if value == "allow")

    def denied(self) -> list[str]:
        return sorted(item for item, value in self.items.items() if value == "deny")


def parse_time(text: str, what: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``±hh:mm``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedStatement(f"{what} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise MalformedStatement(f"{what} needs a time zone offset")
    return moment


def read_statement(payload: bytes) -> Statement:
    """The statement in a JWS payload: JSON object, canonical form, schema, well-formed times."""
    try:
        document = json.loads(payload)
    except ValueError:
        raise MalformedStatement("the payload is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedStatement("the payload is not a JSON object")
    if not is_canonical(payload):
        raise NotCanonical()
    try:
        statement = Statement.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MalformedStatement(f"{where}: {first['msg']}") from None
    statement.signed_time, statement.valid_from, statement.valid_until  # noqa: B018 - parse now
    if statement.valid_until <= statement.valid_from:
        raise MalformedStatement("validity.until must be after validity.from")
    return statement
