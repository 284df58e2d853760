"""Request and response bodies of the signer API."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, model_validator

from tsunagu.signer.domain.algorithms import Algorithm, SignatureFormat
from tsunagu.signer.domain.keys import KeyState, Purpose, SigningKey


def _decode_b64url(value: object) -> bytes:
    if not isinstance(value, str) or len(value) > 200_000:
        raise ValueError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


Base64Url = Annotated[bytes, PlainValidator(_decode_b64url), PlainSerializer(b64url, return_type=str)]


class SignItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Base64Url | None = None
    digest: Base64Url | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> SignItem:
        if (self.data is None) == (self.digest is None):
            raise ValueError("give exactly one of data or digest")
        return self


class _KeySelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: str | None = Field(default=None, max_length=64)
    purpose: Purpose | None = None
    algorithm: Algorithm | None = None
    format: SignatureFormat = SignatureFormat.RAW

    @model_validator(mode="after")
    def one_selector(self) -> _KeySelector:
        if (self.key_id is None) == (self.purpose is None):
            raise ValueError("give exactly one of key_id or purpose")
        return self


class SignRequest(_KeySelector, SignItem):
    pass


class BatchSignRequest(_KeySelector):
    items: list[SignItem] = Field(min_length=1)


class Signature(BaseModel):
    key_id: str
    algorithm: Algorithm
    signature: str


class BatchSignatures(BaseModel):
    key_id: str
    algorithm: Algorithm
    signatures: list[str]


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: Purpose
    algorithm: Algorithm
    key_size: int | None = None
    allowed_callers: list[str] | None = Field(default=None, max_length=16)


class KeyView(BaseModel):
    kid: str
    purpose: Purpose
    algorithm: Algorithm
    key_size: int | None
    state: KeyState
    allowed_callers: list[str]
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    destroyed_at: datetime | None
    public_key_pem: str
    jwk: dict[str, str]

    @classmethod
    def of(cls, key: SigningKey) -> KeyView:
        return cls(
            kid=key.kid,
            purpose=key.purpose,
            algorithm=key.algorithm,
            key_size=key.key_size,
            state=key.state,
            allowed_callers=list(key.allowed_callers),
            created_at=key.created_at,
            activated_at=key.activated_at,
            retired_at=key.retired_at,
            destroyed_at=key.destroyed_at,
            public_key_pem=key.public_key_pem(),
            jwk=key.jwk(),
        )


class JwkSet(BaseModel):
    keys: list[dict[str, str]]
