"""Enrollment of a phone (DESIGN §4): challenge → JPKI proof → signing → authentication certificate.

Also the further certificates a proven phone asks for later: per-app certificates on a request
signed with an authentication key. Every step either completes with its records and events in one
transaction or leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.ca.domain import profiles
from tsunagu.ca.domain.csr_rfc2986 import csr_public_key, spki_sha256
from tsunagu.ca.domain.errors import (
    CertificateNotUsable,
    ChallengeExpired,
    ChallengeReused,
    EnrollmentConflict,
    EnrollmentNotFound,
    InvalidBasic4Consent,
    InvalidJpkiCertificate,
    InvalidSignedRequest,
    JpkiCertificateRevoked,
    JpkiStatusUnknown,
    PersonDeceased,
    PublicKeyReused,
    SignedRequestReplayed,
    UpstreamUnavailable,
    WrongEnrollmentState,
)
from tsunagu.ca.domain.jpki_proof import (
    JpkiTrustAnchors,
    jpki_serial,
    load_jpki_certificate,
    signed_challenge,
    verify_jpki_proof,
)
from tsunagu.ca.domain.service import CertificateAuthority, IssuedCertificate
from tsunagu.ca.domain.signed_request_jws import read_header, verify_request
from tsunagu.ca.domain.user_number import new_user_number
from tsunagu.ca.store import issuance
from tsunagu.ca.store.issuance import Advance
from tsunagu.ca.store.repository import (
    CaRepository,
    CertificateRecord,
    EnrollmentRecord,
    certificate_by_serial,
)
from tsunagu.clients import UpstreamError
from tsunagu.events.schemas.ca import PersonEnrolledV1
from tsunagu.obs import failpoint
from tsunagu.service.runtime import pause

log = logging.getLogger(__name__)


class JlisPort(Protocol):
    """What enrollment asks jlis-sync (``tsunagu.clients.jlis_sync.JlisSyncClient``)."""

    async def card_status(self, certificate_pem: str) -> dict[str, Any]: ...

    async def link_or_owner(self, proposed: str, certificate_pem: str, basic4_consent: str | None) -> str: ...


@dataclass(frozen=True)
class Started:
    enrollment_id: str
    challenge: str
    signed_data: str  # exactly what the card signs
    expires_at: datetime


@dataclass(frozen=True)
class Proofed:
    enrollment_id: str
    user_number: str
    device_id: str
    new_person: bool


def _b64url(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (ValueError, TypeError):
        return b""


async def _jlis(call: Callable[[], Any]) -> Any:
    try:
        return await call()
    except (httpx.TransportError, httpx.TimeoutException):
        raise UpstreamUnavailable("jlis-sync is unreachable") from None
    except UpstreamError as error:
        if error.status >= 500 or error.status == 429:
            raise UpstreamUnavailable(f"jlis-sync answered {error.status}") from None
        if error.status == 409:
            raise EnrollmentConflict("J-LIS links the card to another enrollment; retry") from None
        problem = str(error.problem.get("type", ""))
        if problem.endswith(":invalid-basic4-consent"):
            raise InvalidBasic4Consent("the consent is not signed by this card for this operator") from None
        if problem.endswith(":invalid-jpki-certificate"):
            raise InvalidJpkiCertificate("jlis-sync does not accept the card's certificate") from None
        log.error("jlis-sync refused the CA", extra={"status": error.status, "problem": problem})
        raise UpstreamUnavailable(f"jlis-sync answered {error.status}") from None


class Enrollments:
    def __init__(
        self,
        ca: CertificateAuthority,
        jlis: JlisPort,
        anchors: JpkiTrustAnchors,
        *,
        token: Callable[[int], str] = secrets.token_urlsafe,
    ) -> None:
        self.ca = ca
        self.jlis = jlis
        self.anchors = anchors
        self.token = token

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ca.clock

    # -- 1. start --------------------------------------------------------------------------

    async def start(self) -> Started:
        self.ca.hierarchy.current_issuing()  # refuse early (503) if there is no CA yet
        enrollment_id, challenge = self.token(16), self.token(32)
        now = self.clock()
        expires_at = now + self.ca.policy.challenge_ttl
        await issuance.add_enrollment(self.ca.db, enrollment_id, challenge, now, expires_at)
        data = signed_challenge(enrollment_id, challenge).decode()
        return Started(enrollment_id, challenge, data, expires_at)

    async def run_housekeeping(self, every_s: float, stopping: asyncio.Event) -> None:
        """Forget spent request ids and abandoned enrollments (their evidence stays)."""
        while not stopping.is_set():
            now = self.clock()
            try:
                async with self.ca.db.transaction() as session:
                    repository = CaRepository(session)
                    await repository.purge_jti(now)
                    await repository.purge_enrollments(
                        now - self.ca.policy.enrollment_completion - timedelta(days=1)
                    )
            except Exception as exc:
                log.error("CA housekeeping failed", extra={"error": type(exc).__name__})
            await pause(stopping, every_s)

    async def _enrollment(self, enrollment_id: str) -> EnrollmentRecord:
        record = await issuance.enrollment(self.ca.db, enrollment_id)
        if record is None:
            raise EnrollmentNotFound("no such enrollment")
        return record

    # -- 2. the card's proof -----------------------------------------------------------------

    async def prove(
        self, enrollment_id: str, certificate_pem: str, signature_b64: str, basic4_consent: str | None
    ) -> Proofed:
        enrollment = await self._enrollment(enrollment_id)
        now = self.clock()
        if enrollment.state != "started":
            raise ChallengeReused("this enrollment's challenge was already answered")
        if now > enrollment.expires_at:
            raise ChallengeExpired("the challenge has expired; start a new enrollment")
        jpki = load_jpki_certificate(certificate_pem.encode())
        data = signed_challenge(enrollment_id, enrollment.challenge)
        signature = _b64url(signature_b64)
        verify_jpki_proof(jpki, data, signature, self.anchors, now)
        pem = jpki.public_bytes(Encoding.PEM).decode()
        status = await _jlis(lambda: self.jlis.card_status(pem))
        if status["status"] == "revoked":
            raise JpkiCertificateRevoked("J-LIS reports the card's signing certificate revoked")
        if status["status"] != "good":
            raise JpkiStatusUnknown("J-LIS does not know the card's signing certificate")
        serial = jpki_serial(jpki)
        device_id = self.token(12)
        async with issuance.proof_transaction(self.ca.db, self.ca.outbox) as writes:
            # One enrollment of a card at a time: the twin waits here, then finds the person.
            await writes.lock(f"jpki:{serial}")
            known = await writes.person_for_card(serial)
            # jlis-sync links the card to the known person or a fresh number — or answers whom
            # J-LIS linked it to after a move or renewal. Linked before our commit: killed in
            # between, the next attempt gets the same answer, so a number is never lost or doubled.
            proposed = known or new_user_number()
            user_number = await _jlis(lambda: self.jlis.link_or_owner(proposed, pem, basic4_consent))
            if known is not None and user_number != known:
                raise EnrollmentConflict("J-LIS links the card to another person")
            created, state = await writes.add_person(user_number, now)
            if state == "deceased":
                raise PersonDeceased("the person is recorded as deceased")
            failpoint("ca.enrollment.after_link")
            if known is None and not await writes.add_card(serial, user_number, now):
                raise EnrollmentConflict("the card was enrolled for another number meanwhile")
            if not await writes.proofed(enrollment_id, user_number, device_id, now):
                raise ChallengeReused("this enrollment's challenge was already answered")
            await writes.add_proofing_record(
                {
                    "id": self.token(16),
                    "enrollment_id": enrollment_id,
                    "user_number": user_number,
                    "jpki_serial": serial,
                    "jpki_certificate_der": jpki.public_bytes(Encoding.DER),
                    "signed_data": data,
                    "signature": signature,
                    "jlis_status": status["status"],
                    "jlis_checked_at": now,
                    "new_person": created,
                    "decided_at": now,
                }
            )
            await writes.add_event(
                PersonEnrolledV1(
                    user_number=user_number,
                    enrollment_id=enrollment_id,
                    device_id=device_id,
                    new_person=created,
                    jpki_serial=serial,
                    proofed_at=now,
                )
            )
        log.info("identity proofed", extra={"enrollment_id": enrollment_id, "new_person": created})
        return Proofed(enrollment_id, user_number, device_id, created)

    # -- 3. signing certificate ----------------------------------------------------------------

    def _open(self, enrollment: EnrollmentRecord, state: str) -> tuple[str, str]:
        """(user number, device id) of a proven enrollment at ``state``, still in its window."""
        if self.clock() > enrollment.expires_at + self.ca.policy.enrollment_completion:
            raise ChallengeExpired("the enrollment was not completed in time; start again")
        if enrollment.state != state or enrollment.user_number is None or enrollment.device_id is None:
            raise WrongEnrollmentState(f"the enrollment is {enrollment.state}, not {state}")
        return enrollment.user_number, enrollment.device_id

    async def issue_signing(self, enrollment_id: str, csr: str) -> IssuedCertificate:
        user_number, device_id = self._open(await self._enrollment(enrollment_id), "proofed")
        return await self._issue(
            "signing",
            user_number,
            device_id,
            csr,
            enrollment_id=enrollment_id,
            advance=Advance(enrollment_id, "proofed", "signing", "signing_serial"),
        )

    # -- 4. authentication certificate (request signed with the signing key) --------------------

    async def issue_authentication(self, enrollment_id: str, signed_request: str) -> IssuedCertificate:
        enrollment = await self._enrollment(enrollment_id)
        user_number, device_id = self._open(enrollment, "signing")
        claims, signer = await self._verified(signed_request, kinds=("signing",))
        if signer.serial != enrollment.signing_serial or claims.get("enrollment_id") != enrollment_id:
            raise InvalidSignedRequest("the request must be signed with this enrollment's signing key")
        return await self._issue(
            "authentication",
            user_number,
            device_id,
            _csr_claim(claims),
            enrollment_id=enrollment_id,
            advance=Advance(enrollment_id, "signing", "complete", "authentication_serial"),
            jti=claims["jti"],
        )

    # -- later: per-app certificates (request signed with an authentication key) ---------------

    async def issue_app(self, signed_request: str) -> IssuedCertificate:
        claims, signer = await self._verified(signed_request, kinds=("authentication",))
        app_id = claims.get("app_id")
        if not isinstance(app_id, str) or not 0 < len(app_id) <= 64:
            raise InvalidSignedRequest("app_id (≤ 64 characters) required")
        return await self._issue(
            "app", signer.user_number, signer.device_id, _csr_claim(claims), app_id=app_id, jti=claims["jti"]
        )

    async def _verified(self, token: str, kinds: tuple[str, ...]) -> tuple[dict[str, Any], CertificateRecord]:
        """A signed wallet request: the certificate is ours, good now, of the right kind."""
        request = read_header(token)
        record = await certificate_by_serial(self.ca.db, request.kid)
        if record is None:
            raise InvalidSignedRequest("kid names no certificate of this CA")
        certificate = x509.load_der_x509_certificate(record.certificate_der)
        now = self.clock()
        max_age = self.ca.policy.signed_request_max_age
        claims = verify_request(request, certificate.public_key(), now=now, max_age=max_age)
        if record.kind not in kinds:
            raise CertificateNotUsable(f"a {' or '.join(kinds)} certificate must sign this request")
        if record.revoked_at is not None or not record.not_before <= now <= record.not_after:
            raise CertificateNotUsable("the signing certificate is revoked or expired")
        if await issuance.jti_used(self.ca.db, claims["jti"]):  # the commit re-checks (races)
            raise SignedRequestReplayed("this signed request was already used")
        return claims, record

    async def _issue(
        self,
        kind: profiles.CertificateKind,
        user_number: str,
        device_id: str,
        csr: str,
        *,
        enrollment_id: str | None = None,
        app_id: str | None = None,
        advance: Advance | None = None,
        jti: str | None = None,
    ) -> IssuedCertificate:
        public_key = csr_public_key(csr.encode())
        fingerprint = spki_sha256(public_key)
        facts = await issuance.issuance_facts(self.ca.db, fingerprint, user_number)
        if facts.public_key_known:
            raise PublicKeyReused("this public key is already certified")
        if facts.person_state != "active":
            raise PersonDeceased("the person is recorded as deceased")
        issuer, certificate, identifier = await self.ca.sign_end_entity(kind, user_number, public_key)
        failpoint("ca.issue.after_sign")
        row, event, issued = self.ca.issued_record(
            issuer=issuer,
            certificate=certificate,
            identifier=identifier,
            kind=kind,
            user_number=user_number,
            device_id=device_id,
            spki_sha256=fingerprint,
            enrollment_id=enrollment_id,
            app_id=app_id,
        )
        spent = None if jti is None else (jti, row["issued_at"] + 2 * self.ca.policy.signed_request_max_age)
        try:
            await issuance.record_issued(self.ca.db, self.ca.outbox, row, event, jti=spent, advance=advance)
        except issuance.RequestIdUsed:
            raise SignedRequestReplayed("this signed request was already used") from None
        except issuance.PublicKeyTaken:
            raise PublicKeyReused("this public key was certified meanwhile") from None
        except issuance.EnrollmentMoved:
            raise WrongEnrollmentState("a twin request completed this step first") from None
        log.info("certificate issued", extra={"serial": issued.serial, "kind": kind, "issuer": issuer.id})
        return issued


def _csr_claim(claims: dict[str, Any]) -> str:
    csr = claims.get("csr")
    if not isinstance(csr, str) or not csr:
        raise InvalidSignedRequest("csr (PEM) required in the signed request")
    return csr
