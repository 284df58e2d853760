"""Request and response bodies of the jlis-sync API."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificate_pem: str = Field(max_length=16_384)
    basic4_consent: str | None = Field(default=None, max_length=32_768)


class ProposedLink(LinkRequest):
    user_number: str = Field(min_length=1, max_length=32)


class Linked(BaseModel):
    user_number: str
    jpki_serial: str


class LinkOwner(BaseModel):
    jpki_serial: str
    user_number: str
    state: str  # current | superseded | revoked


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificate_pem: str = Field(max_length=16_384)


class Status(BaseModel):
    status: str
    reason: str | None
    revoked_at: datetime | None
    this_update: datetime
    next_update: datetime | None


class Resident(BaseModel):
    user_number: str
    name: str
    address: str
    birth_date: date
    sex: str
    deceased_at: datetime | None


class CrlSync(BaseModel):
    status: str
    crl_number: int | None
    entries: int
    matched: int
    acted: int


class PushResult(BaseModel):
    result: str
