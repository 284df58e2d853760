"""Request and response bodies of the CA API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollmentStarted(BaseModel):
    enrollment_id: str
    challenge: str
    signed_data: str = Field(description="what the card signs (ASCII): RSASSA-PKCS1-v1_5 SHA-256")
    expires_at: datetime


class JpkiProof(_Strict):
    jpki_certificate: str = Field(max_length=16_384, description="the card's signing certificate, PEM")
    signature: str = Field(max_length=2_048, description="base64url signature over signed_data")
    basic4_consent: str | None = Field(
        default=None, max_length=32_768, description="consent to the latest-basic-4 service (JWS)"
    )


class ProofAccepted(BaseModel):
    enrollment_id: str
    user_number: str
    device_id: str
    new_person: bool


class CsrRequest(_Strict):
    csr: str = Field(max_length=16_384, description="PKCS#10, PEM")


class SignedRequest(_Strict):
    request: str = Field(max_length=32_768, description="compact JWS, kid = certificate serial")


class CertificateIssued(BaseModel):
    serial: str
    kind: str
    certificate: str = Field(description="PEM")
    chain: list[str] = Field(description="issuing CA … root, PEM")


class HierarchyRequest(_Strict):
    root_key_id: str = Field(max_length=64)
    issuing_key_id: str = Field(max_length=64)
    ocsp_key_id: str = Field(max_length=64)


class RolloverRequest(_Strict):
    issuing_key_id: str = Field(max_length=64)
    ocsp_key_id: str = Field(max_length=64)


class AuthorityView(BaseModel):
    id: str
    kind: str
    parent_id: str | None
    key_id: str
    algorithm: str
    state: str
    certificate: str


class OperatorRevocation(_Strict):
    reason: str = Field(
        pattern="^(unspecified|keyCompromise|affiliationChanged|superseded|cessationOfOperation|privilegeWithdrawn)$"
    )
    comment: str = Field(min_length=3, max_length=500, description="why (audited; no personal data)")


class CertificateStatus(BaseModel):
    serial: str
    issuer_id: str
    user_number: str
    device_id: str
    kind: str
    app_id: str | None
    status: str  # good | revoked | expired | not-yet-valid
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    certificate: str = Field(description="PEM")
    chain: list[str]


class Revoked(BaseModel):
    revoked: list[str]


class ValidateRequest(_Strict):
    certificate: str = Field(max_length=16_384, description="PEM")
    at: datetime | None = Field(default=None, description="status at this time (default: now)")
