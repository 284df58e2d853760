"""Checking a J-LIS CRL before anything in it is believed (RFC 5280 §5, §6.3)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tsunagu.jlis_sync.domain.errors import CrlRejected

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RevokedEntry:
    serial: str  # lower-case hex
    revoked_at: datetime
    reason: str  # x509.ReasonFlags value, "unspecified" when absent


@dataclass(frozen=True)
class CheckedCrl:
    crl: x509.CertificateRevocationList
    number: int
    this_update: datetime
    next_update: datetime


def check_crl(der: bytes, issuer: x509.Certificate, *, now: datetime) -> CheckedCrl:
    """Parse and verify ``der`` against ``issuer``; raise :class:`CrlRejected` with the reason."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        raise CrlRejected("malformed CRL") from None
    if crl.issuer != issuer.subject:
        raise CrlRejected("CRL issuer is not the configured J-LIS CA")
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):
        valid = False
    if not valid:
        raise CrlRejected("CRL signature does not verify with the J-LIS CA key")
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise CrlRejected("CRL has no CRL number") from None
    next_update = crl.next_update_utc
    if next_update is None or next_update <= now:
        raise CrlRejected("CRL is past its nextUpdate")
    if crl.last_update_utc > now + CLOCK_SKEW:
        raise CrlRejected("CRL thisUpdate is in the future")
    return CheckedCrl(crl, number, crl.last_update_utc, next_update)


def revoked_entries(crl: x509.CertificateRevocationList) -> Iterator[RevokedEntry]:
    """Every entry, in CRL order, as plain values."""
    for revoked in crl:
        try:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        yield RevokedEntry(format(revoked.serial_number, "x"), revoked.revocation_date_utc, reason)
