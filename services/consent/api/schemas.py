"""Request and response bodies of the consent API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tsunagu.consent.domain.statement import Limits, Purpose

ID = r"^[A-Za-z0-9._:-]{1,64}$"
USER_NUMBER = r"^[A-Za-z0-9]{1,16}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipientBody(_Strict):
    name_ja: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)


class RecipientView(BaseModel):
    id: str
    name_ja: str
    name_en: str
    created: bool


class RequestedItemBody(_Strict):
    item: str = Field(max_length=64)
    required: bool = False


class ValidityBody(_Strict):
    valid_from: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime


class CreateRequestBody(_Strict):
    user_number: str = Field(pattern=USER_NUMBER)
    recipient: str = Field(pattern=ID)
    items: list[RequestedItemBody] = Field(min_length=1, max_length=50)
    purpose: Purpose
    purpose_dpv: str | None = Field(default=None, pattern=r"^dpv:[A-Za-z]{1,90}$")
    validity: ValidityBody
    notice_version: str = Field(default="1", min_length=1, max_length=32)
    limits: Limits | None = None
    answer_within_s: int | None = Field(default=None, gt=0, le=365 * 86_400)


class EffectiveBody(_Strict):
    user_number: str = Field(pattern=USER_NUMBER)
    recipient: str = Field(max_length=64)
    items: list[str] = Field(min_length=1, max_length=500)
    purpose: str = Field(max_length=64)
    at: AwareDatetime | None = None


class EffectiveAnswer(BaseModel):
    decisions: dict[str, Literal["allow", "deny"]]


class CheckBody(_Strict):
    user_number: str = Field(pattern=USER_NUMBER)
    recipient: str = Field(max_length=64)
    item: str = Field(max_length=64)
    purpose: str = Field(max_length=64)
    at: AwareDatetime | None = None


class CheckItem(_Strict):
    user_number: str = Field(pattern=USER_NUMBER)
    recipient: str = Field(max_length=64)
    item: str = Field(max_length=64)
    purpose: str = Field(max_length=64)


class BatchBody(_Strict):
    checks: list[CheckItem] = Field(min_length=1, max_length=500)
    at: AwareDatetime | None = None


class BatchAnswer(BaseModel):
    decisions: list[Literal["allow", "deny"]] = Field(description="in the order of the checks")


class CheckAnswer(BaseModel):
    decision: Literal["allow", "deny"]


class DecisionBody(_Strict):
    decision: str = Field(max_length=32_768, description="compact JWS, typ tsunagu-consent-decision+jws")


class DecisionRecorded(BaseModel):
    decision_id: str
    decision_sha256: str
    sequence: int
    recorded_at: str
    event: str
    receipt: str = Field(description="compact JWS by the platform's receipt key")
    receipt_kid: str


class SignedQuery(_Strict):
    request: str = Field(max_length=16_384, description="compact JWS, typ tsunagu-consent-query+jwt")


class Catalog(BaseModel):
    items: list[dict[str, Any]]
