"""最新の利用者情報（4情報）提供: the latest basic 4 information for an old signing certificate.

J-LIS answers only with the holder's consent: a JWS made with the card signing key of the
certificate asked about (kept by the platform since enrollment), checked against the certificate
J-LIS issued, even when that certificate has since been revoked.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tsunagu.errors import Forbidden, NotFound
from tsunagu.jpki import basic4_from_certificate
from tsunagu.sandbox.jlis.jws import JwsInvalid, parse_compact, sign_compact
from tsunagu.sandbox.jlis.lifecycle import chain
from tsunagu.sandbox.jlis.schemas import Basic4Answer
from tsunagu.sandbox.jlis.store import CertificateRecord, State

CONSENT_PURPOSE = "jlis-basic4"
# a consent made on a phone whose clock runs a little fast is still a consent
CLOCK_SKEW = timedelta(minutes=5)


class ConsentInvalid(Forbidden):
    code = "jlis-consent-invalid"
    title = "No valid consent of the certificate holder"


class SerialNotFound(NotFound):
    code = "jlis-serial-not-found"
    title = "No signing certificate with this serial was issued"


def make_consent(
    certificate: x509.Certificate, operator: str, iat: datetime, sign: Callable[[bytes], bytes]
) -> str:
    """The consent JWS a holder's card makes for ``operator`` (what the phone app does)."""
    payload = {
        "purpose": CONSENT_PURPOSE,
        "serial": format(certificate.serial_number, "x"),
        "operator": operator,
        "iat": int(iat.timestamp()),
    }
    return sign_compact(payload, certificate, sign)


def verify_consent(token: str, certificate: x509.Certificate, now: datetime) -> None:
    """Raise :class:`ConsentInvalid` unless ``token`` is a consent by ``certificate``'s key for it.

    The detail never says which check failed beyond a category, and never echoes the token.
    """
    try:
        jws = parse_compact(token)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise JwsInvalid("not an RSA certificate")
        jws.verify(public_key)
    except JwsInvalid:
        raise ConsentInvalid("the consent is not a JWS signed by the certificate's key") from None
    chain_ = jws.header.get("x5c")
    issued_der = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    if chain_ is not None and (not isinstance(chain_, list) or not chain_ or chain_[0] != issued_der):
        raise ConsentInvalid("x5c does not name the certificate asked about")
    claims = jws.payload
    iat = claims.get("iat")
    if (
        claims.get("purpose") != CONSENT_PURPOSE
        or claims.get("serial") != format(certificate.serial_number, "x")
        or not isinstance(claims.get("operator"), str)
        or not claims["operator"]
        or not isinstance(iat, int)
        or isinstance(iat, bool)
        or iat > (now + CLOCK_SKEW).timestamp()
    ):
        raise ConsentInvalid("the consent is not for this purpose, certificate or time")


def _changed_at(records: list[CertificateRecord]) -> datetime | None:
    moments = [r.replaced_at for r in records[:-1] if r.replaced_at is not None]
    if records[-1].revoked_at is not None:
        moments.append(records[-1].revoked_at)
    return max(moments, default=None)


def latest_basic4(state: State, serial: str, consent: str, now: datetime) -> Basic4Answer:
    """Follow the old → new links from ``serial`` and answer with the current certificate's data."""
    try:
        record = state.certificates.get(format(int(serial, 16), "x"))
    except ValueError:
        record = None
    if record is None or record.kind != "signing":
        raise SerialNotFound()
    verify_consent(consent, x509.load_pem_x509_certificate(record.pem.encode()), now)
    records = chain(state, record.serial)
    current = records[-1]
    info = basic4_from_certificate(x509.load_pem_x509_certificate(current.pem.encode()))
    person = state.persons[current.person_id]
    status = "deceased" if person.deceased_at else ("revoked" if current.revoked_at else "valid")
    return Basic4Answer(
        serial_requested=record.serial,
        current_serial=current.serial,
        name=info.name,
        address=info.address,
        birth_date=info.birth_date,
        sex=info.sex,
        changed_at=_changed_at(records),
        status=status,
    )
