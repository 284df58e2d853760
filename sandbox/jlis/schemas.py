"""Request and response bodies of the sandbox API (also the return values of :class:`JlisSandbox`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

Sex = Literal["1", "2", "3"]


class CardRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=400)
    birth_date: date
    sex: Sex
    key_storage: Literal["file", "pkcs11"] = "file"


class CardIssued(BaseModel):
    card_id: str
    person_id: str
    signing_certificate: str
    auth_certificate: str
    signing_serial: str
    auth_serial: str


class CardView(CardIssued):
    status: Literal["active", "lost", "deceased"]
    signing_revoked: bool
    auth_revoked: bool


class SignRequest(BaseModel):
    data: str = Field(description="base64url, unpadded or padded")
    certificate: Literal["signing", "auth"] = "signing"


class SignResponse(BaseModel):
    signature: str = Field(description="RSASSA-PKCS1-v1_5 SHA-256, base64url without padding")
    serial: str
    certificate: str


class MoveRequest(BaseModel):
    address: str = Field(min_length=1, max_length=400)


class RenameRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class LifeEvent(BaseModel):
    event_id: str
    type: Literal["move", "rename", "renew", "lose", "die"]
    card_id: str
    old_serial: str
    new_serial: str | None = None
    old_auth_serial: str | None = None
    new_auth_serial: str | None = None


class SubscriptionRequest(BaseModel):
    url: str = Field(pattern=r"^https?://", max_length=2000)


class Subscription(BaseModel):
    subscription_id: str
    url: str


class Basic4Request(BaseModel):
    serial: str = Field(min_length=1, max_length=64)
    consent: str = Field(min_length=1, max_length=20000)


class Basic4Answer(BaseModel):
    serial_requested: str
    current_serial: str
    name: str
    address: str
    birth_date: date
    sex: Sex
    changed_at: datetime | None
    status: Literal["valid", "revoked", "deceased"]


class CrlPublished(BaseModel):
    signing_crl_number: int
    user_auth_crl_number: int
