"""Revocation (RFC 5280 reason codes) by the citizen, by an operator, and on a J-LIS death notice.

Each revocation marks the certificates, drops their pre-signed OCSP answers (the refresher signs
"revoked" ones; until then the responder signs on demand), bumps the issuer's revocation count (the
CRL publisher sees the change) and stages ``ca.certificate.revoked`` — one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.ca.domain.enrollment import Enrollments
from tsunagu.ca.domain.errors import (
    AlreadyRevoked,
    CertificateNotFound,
    InvalidSignedRequest,
    NotYourCertificate,
    SignedRequestReplayed,
)
from tsunagu.ca.store.repository import CaRepository, CertificateRecord
from tsunagu.events.schemas.ca import CertificateRevokedV1

log = logging.getLogger(__name__)
# What a citizen or an operator may give (certificateHold is not offered: a hold cannot be undone
# here, and removeFromCRL is not a reason to revoke).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
CITIZEN_REASONS = ("unspecified", "keyCompromise", "superseded", "cessationOfOperation")
Actor = Literal["citizen", "operator", "jlis"]


def reason_flag(reason: str) -> x509.ReasonFlags:
    return REASONS[reason]


async def revoke_in(
    session: AsyncSession,
    outbox: Any,
    serials: Sequence[str],
    *,
    at: datetime,
    reason: str,
    actor: Actor,
    actor_id: str | None = None,
    comment: str | None = None,
) -> list[CertificateRecord]:
    """Revoke what is not yet revoked among ``serials`` in the caller's transaction."""
    by = actor if actor_id is None else f"{actor}:{actor_id}"
    revoked = await CaRepository(session).revoke(serials, at, reason, by, comment)
    await outbox.add_many(
        session,
        [
            CertificateRevokedV1(
                user_number=record.user_number,
                serial=record.serial,
                issuer_id=record.issuer_id,
                kind=record.kind,
                device_id=record.device_id,
                reason=reason,
                revoked_at=at,
                actor=actor,
                actor_id=actor_id,
            )
            for record in revoked
        ],
    )
    return revoked


class Revocations:
    def __init__(self, enrollments: Enrollments) -> None:
        self.enrollments = enrollments
        self.ca = enrollments.ca

    async def by_citizen(self, signed_request: str) -> list[CertificateRecord]:
        """A request signed with one of the person's authentication keys revokes the person's
        certificates named by ``serials`` or all of a ``device_id`` (a lost phone: sign on another)."""
        claims, signer = await self.enrollments._verified(signed_request, kinds=("authentication",))
        reason = claims.get("reason", "unspecified")
        if reason not in CITIZEN_REASONS:
            raise InvalidSignedRequest(f"reason must be one of {', '.join(CITIZEN_REASONS)}")
        device_id, serials = claims.get("device_id"), claims.get("serials")
        async with self.ca.db.sessions() as session:
            repository = CaRepository(session)
            if isinstance(device_id, str) and serials is None:
                targets = await repository.certificates_of(signer.user_number, device_id)
            elif isinstance(serials, list) and device_id is None and 0 < len(serials) <= 100:
                targets = [await self._owned(repository, str(s).lower(), signer.user_number) for s in serials]
            else:
                raise InvalidSignedRequest("give either device_id or serials (1–100)")
        live = [t.serial for t in targets if t.revoked_at is None]
        if not live:
            raise AlreadyRevoked("nothing left to revoke")
        now = self.ca.clock()
        async with self.ca.db.transaction() as session:
            if not await CaRepository(session).use_jti(
                claims["jti"], now + 2 * self.ca.policy.signed_request_max_age
            ):
                raise SignedRequestReplayed("this signed request was already used")
            revoked = await revoke_in(session, self.ca.outbox, live, at=now, reason=reason, actor="citizen")
        log.info("revoked by the citizen", extra={"count": len(revoked)})
        return revoked

    @staticmethod
    async def _owned(repository: CaRepository, serial: str, user_number: str) -> CertificateRecord:
        record = await repository.certificate(serial)
        if record is None:
            raise CertificateNotFound("no such certificate")
        if record.user_number != user_number:
            raise NotYourCertificate("the certificate belongs to someone else")
        return record

    async def by_operator(self, serial: str, reason: str, comment: str, operator: str) -> CertificateRecord:
        """An operator's revocation: reason and comment required, the operator named in the record
        and the event (the audit trail)."""
        now = self.ca.clock()
        async with self.ca.db.transaction() as session:
            record = await CaRepository(session).certificate(serial.lower())
            if record is None:
                raise CertificateNotFound("no such certificate")
            revoked = await revoke_in(
                session,
                self.ca.outbox,
                [record.serial],
                at=now,
                reason=reason,
                actor="operator",
                actor_id=operator,
                comment=comment,
            )
            if not revoked:
                raise AlreadyRevoked("the certificate is already revoked")
        log.warning(
            "revoked by an operator", extra={"serial": record.serial, "operator": operator, "reason": reason}
        )
        return revoked[0]

    async def on_death(self, session: AsyncSession, user_number: str, at: datetime) -> list[str]:
        """J-LIS reported the person's death: every certificate of theirs is revoked (in the
        consumer's transaction, so the event is handled exactly once)."""
        repository = CaRepository(session)
        if await repository.person_state(user_number) is None:
            return []
        await repository.mark_deceased(user_number, at)
        live = [r.serial for r in await repository.certificates_of(user_number) if r.revoked_at is None]
        revoked = await revoke_in(
            session, self.ca.outbox, live, at=self.ca.clock(), reason="cessationOfOperation", actor="jlis"
        )
        return [record.serial for record in revoked]
