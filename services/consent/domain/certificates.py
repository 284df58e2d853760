"""Whose certificate signed, and whether it counted: the CA's word, never the presenter's.

A decision counts only when the CA says the certificate is one it issued (byte for byte), of the
required kind, and ``good`` at the signing time; we also refuse one revoked between the signing
time and now (the freshness window is minutes, so this only closes the race after a lost phone).
The x5c chain must be the CA's own chain for the certificate, so the stored evidence verifies
offline with the CA certificates alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.clients.ca import CaClient
from tsunagu.clients.internal import UpstreamError
from tsunagu.consent.domain.errors import (
    CaUnavailable,
    CertificateNotGood,
    CertificateUnknown,
    CertificateWrongKind,
    ChainMismatch,
)


@dataclass(frozen=True)
class CertificateHolder:
    user_number: str
    serial: str
    kind: str
    status: str
    not_after: str | None
    evidence: dict[str, Any]  # what the CA answered (status, times), kept with the decision


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else None


async def holder(
    ca: CaClient,
    chain: list[x509.Certificate],
    *,
    kind: str,
    at: datetime,
    now: datetime,
) -> CertificateHolder:
    """The person behind ``chain[0]`` once the CA vouches for it at ``at`` (and still at ``now``)."""
    pem = chain[0].public_bytes(Encoding.PEM).decode()
    try:
        answer = await ca.validate(pem, at=at)
    except (UpstreamError, httpx.HTTPError) as error:
        raise CaUnavailable(f"the CA did not answer ({type(error).__name__})") from None
    if answer is None:
        raise CertificateUnknown()
    if answer.get("kind") != kind:
        raise CertificateWrongKind(f"a {kind} certificate is required")
    status = str(answer.get("status"))
    if status != "good":
        raise CertificateNotGood(f"the certificate was {status} at the signing time")
    revoked_at = _time(answer.get("revoked_at"))
    if revoked_at is not None and revoked_at <= now:
        raise CertificateNotGood("the certificate has been revoked since it signed")
    ca_chain = [
        x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
        for text in answer.get("chain") or []
    ]
    presented = [certificate.public_bytes(Encoding.DER) for certificate in chain[1:]]
    if presented != ca_chain[: len(presented)]:
        raise ChainMismatch()
    evidence = {
        key: answer.get(key)
        for key in ("serial", "issuer_id", "kind", "status", "not_before", "not_after", "revoked_at")
    }
    evidence["at"] = at.isoformat()
    return CertificateHolder(
        user_number=str(answer["user_number"]),
        serial=str(answer["serial"]),
        kind=kind,
        status=status,
        not_after=answer.get("not_after"),
        evidence=evidence,
    )
