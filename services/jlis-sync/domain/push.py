"""J-LIS push notifications: a compact JWS (RS256) whose x5c certificate J-LIS's root issued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from tsunagu.jlis_sync.domain.errors import InvalidPush, StalePush
from tsunagu.jlis_sync.domain.jws_x5c import MAX_TOKEN_BYTES, X5cJwsInvalid, verify_x5c_jws

KINDS = {"move", "rename", "renew", "lose", "die"}
__all__ = ["MAX_TOKEN_BYTES", "PushNotice", "verify_push"]


@dataclass(frozen=True)
class PushNotice:
    id: str
    kind: str
    issued_at: datetime
    old_serial: str
    new_serial: str | None


def _check_signer(certificate: x509.Certificate, root: x509.Certificate, now: datetime) -> None:
    try:
        certificate.verify_directly_issued_by(root)
    except Exception:  # cryptography raises several types for a certificate it cannot use
        raise InvalidPush("the notification certificate was not issued by the J-LIS root") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise InvalidPush("the notification certificate is not valid now")


def verify_push(token: str, root: x509.Certificate, *, now: datetime, max_age: timedelta) -> PushNotice:
    """Check signature, signer and freshness; return the notice. Any defect is a refusal."""
    try:
        verified = verify_x5c_jws(token)
    except X5cJwsInvalid as invalid:
        raise InvalidPush(str(invalid)) from None
    _check_signer(verified.certificate, root, now)
    claims = verified.claims
    try:
        notice = PushNotice(
            id=str(claims["id"]),
            kind=str(claims["type"]),
            issued_at=datetime.fromisoformat(str(claims["issued_at"])),
            old_serial=str(claims["old_serial"]).lower(),
            new_serial=str(claims["new_serial"]).lower() if claims.get("new_serial") else None,
        )
    except (KeyError, ValueError):
        raise InvalidPush("the notification lacks a required field") from None
    if notice.kind not in KINDS or not notice.id or len(notice.id) > 64:
        raise InvalidPush("unknown notification type")
    if notice.issued_at.tzinfo is None or not now - max_age <= notice.issued_at <= now + timedelta(minutes=5):
        raise StalePush("issued_at is outside the accepted window")
    return notice
