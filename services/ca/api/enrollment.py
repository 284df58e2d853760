"""The wallet's routes: enroll a phone, get further certificates, revoke (public, rate limited)."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends

from tsunagu.ca.api.deps import CaServices, services
from tsunagu.ca.api.schemas import (
    CertificateIssued,
    CsrRequest,
    EnrollmentStarted,
    JpkiProof,
    ProofAccepted,
    Revoked,
    SignedRequest,
)
from tsunagu.ca.domain.service import IssuedCertificate

router = APIRouter(prefix="/v1", tags=["wallet"])


def _issued(issued: IssuedCertificate) -> CertificateIssued:
    return CertificateIssued(
        serial=issued.serial,
        kind=issued.kind,
        certificate=issued.pem(),
        chain=[c.public_bytes(Encoding.PEM).decode() for c in issued.chain],
    )


@router.post("/enrollments", status_code=201, response_model=EnrollmentStarted)
async def start(ca: CaServices = Depends(services)) -> EnrollmentStarted:
    """Start enrolling a phone: a one-time challenge for the card to sign."""
    started = await ca.enrollments.start()
    return EnrollmentStarted(
        enrollment_id=started.enrollment_id,
        challenge=started.challenge,
        signed_data=started.signed_data,
        expires_at=started.expires_at,
    )


@router.post("/enrollments/{enrollment_id}/jpki-proof", response_model=ProofAccepted)
async def prove(enrollment_id: str, body: JpkiProof, ca: CaServices = Depends(services)) -> ProofAccepted:
    """The card's signature over ``signed_data`` and its JPKI signing certificate."""
    proofed = await ca.enrollments.prove(
        enrollment_id, body.jpki_certificate, body.signature, body.basic4_consent
    )
    return ProofAccepted(
        enrollment_id=proofed.enrollment_id,
        user_number=proofed.user_number,
        device_id=proofed.device_id,
        new_person=proofed.new_person,
    )


@router.post(
    "/enrollments/{enrollment_id}/signing-certificate", status_code=201, response_model=CertificateIssued
)
async def signing_certificate(
    enrollment_id: str, body: CsrRequest, ca: CaServices = Depends(services)
) -> CertificateIssued:
    """The signing certificate (my電子証明書) for a CSR made in the phone's token."""
    return _issued(await ca.enrollments.issue_signing(enrollment_id, body.csr))


@router.post(
    "/enrollments/{enrollment_id}/authentication-certificate",
    status_code=201,
    response_model=CertificateIssued,
)
async def authentication_certificate(
    enrollment_id: str, body: SignedRequest, ca: CaServices = Depends(services)
) -> CertificateIssued:
    """The authentication certificate (my認証): a JWS signed with the new signing key carrying
    ``{"aud": "tsunagu-ca", "enrollment_id", "csr", "iat", "jti"}``."""
    return _issued(await ca.enrollments.issue_authentication(enrollment_id, body.request))


@router.post("/app-certificates", status_code=201, response_model=CertificateIssued)
async def app_certificate(body: SignedRequest, ca: CaServices = Depends(services)) -> CertificateIssued:
    """A per-app certificate: a JWS signed with an authentication key carrying
    ``{"aud": "tsunagu-ca", "app_id", "csr", "iat", "jti"}``."""
    return _issued(await ca.enrollments.issue_app(body.request))


@router.post("/revocations", response_model=Revoked)
async def revoke(body: SignedRequest, ca: CaServices = Depends(services)) -> Revoked:
    """The citizen revokes: a JWS signed with an authentication key carrying ``{"aud":
    "tsunagu-ca", "device_id" | "serials", "reason", "iat", "jti"}``."""
    revoked = await ca.revocations.by_citizen(body.request)
    ca.published_revocations([r.serial for r in revoked])
    return Revoked(revoked=[r.serial for r in revoked])
