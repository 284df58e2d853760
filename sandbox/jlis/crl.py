"""RFC 5280 CRLs for the two JPKI issuers, and a million-entry CRL for benchmarks.

The builder gets the whole revoked list at once: chaining ``add_revoked_certificate`` copies the
list on every call, which is quadratic (shared/NOTES.md: 100k entries ≈ 9 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tsunagu.errors import NotFound
from tsunagu.sandbox.jlis.lifecycle import revoked
from tsunagu.sandbox.jlis.pki import Clock, KeyPair
from tsunagu.sandbox.jlis.store import CertificateRecord, Store
from tsunagu.x509 import der

CRL_VALIDITY = timedelta(days=1)
KINDS = ("signing", "user-auth")


class UnknownCrl(NotFound):
    code = "jlis-unknown-crl"
    title = "No such CRL (signing or user-auth)"


@dataclass(frozen=True)
class CrlDocument:
    """A published CRL and what HTTP caching needs to know about it."""

    kind: str
    der: bytes
    number: int
    this_update: datetime

    @property
    def etag(self) -> str:
        return f'"{self.kind}-{self.number}"'


def _crl_builder(
    issuer: KeyPair, number: int, this_update: datetime, revoked: list[x509.RevokedCertificate]
) -> x509.CertificateRevocationListBuilder:
    extensions: list[x509.Extension[x509.ExtensionType]] = [
        x509.Extension(
            x509.AuthorityKeyIdentifier.oid,
            False,
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
        ),
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
    ]
    return x509.CertificateRevocationListBuilder(
        issuer_name=issuer.certificate.subject,
        last_update=this_update,
        next_update=this_update + CRL_VALIDITY,
        extensions=extensions,
        revoked_certificates=revoked,
    )


def _entry(serial: int, revoked_at: datetime, reason: x509.ReasonFlags) -> x509.RevokedCertificate:
    reason_extension = x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(reason))
    return x509.RevokedCertificateBuilder(serial, revoked_at, [reason_extension]).build()


def build_crl(
    issuer: KeyPair, revoked: Iterable[CertificateRecord], number: int, this_update: datetime
) -> bytes:
    """The DER CRL of ``issuer`` listing ``revoked`` (each with its reason code)."""
    entries = [
        _entry(int(record.serial, 16), record.revoked_at, x509.ReasonFlags(record.reason))
        for record in revoked
        if record.revoked_at is not None and record.reason is not None
    ]
    crl = _crl_builder(issuer, number, this_update, entries).sign(issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


class CrlPublisher:
    """Builds, numbers, caches and stores (``<state dir>/crl/<kind>.crl``) the two CRLs."""

    def __init__(
        self, store: Store, issuers: dict[str, KeyPair], clock: Clock, state_dir: Path | None
    ) -> None:
        self._store, self._issuers, self._clock = store, issuers, clock
        self._directory = state_dir / "crl" if state_dir else None
        self._cache: dict[str, CrlDocument] = {}

    def publish(self, kind: str) -> CrlDocument:
        """Build the next CRL of ``kind`` now (CRL number + 1)."""
        record, now = self._store.state.crls[kind], self._clock()
        der = build_crl(self._issuers[kind], revoked(self._store.state, kind), record.number + 1, now)
        record.number, record.this_update, record.stale = record.number + 1, now, False
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
            tmp = self._directory / f"{kind}.crl.tmp"
            tmp.write_bytes(der)
            tmp.replace(self._directory / f"{kind}.crl")
        self._store.save()
        self._cache[kind] = CrlDocument(kind, der, record.number, now)
        return self._cache[kind]

    def current(self, kind: str) -> CrlDocument:
        """The CRL of ``kind``, rebuilt when a revocation happened since or it has expired."""
        if kind not in KINDS:
            raise UnknownCrl()
        record, cached = self._store.state.crls[kind], self._cache.get(kind)
        path = self._directory / f"{kind}.crl" if self._directory else None
        if cached is None and record.this_update and path is not None and path.is_file():
            cached = self._cache[kind] = CrlDocument(
                kind, path.read_bytes(), record.number, record.this_update
            )
        expired = cached is not None and self._clock() >= cached.this_update + CRL_VALIDITY
        if cached is None or record.stale or expired:
            return self.publish(kind)
        return cached


@dataclass(frozen=True)
class LargeCrlReport:
    entries: int
    size_bytes: int
    seconds: float


# the reasons a real JPKI CRL is full of, cycled through in the benchmark CRL
_BENCH_REASONS = (
    x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded,
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.cessation_of_operation,
)
_REASON_CODES = {x509.ReasonFlags.affiliation_changed: 3, x509.ReasonFlags.superseded: 4}
_REASON_CODES |= {x509.ReasonFlags.key_compromise: 1, x509.ReasonFlags.cessation_of_operation: 5}


def _reason_extensions(reason: x509.ReasonFlags) -> bytes:
    # Extensions ::= SEQUENCE { Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED } } }
    value = der.encode(der.OCTET_STRING, der.encode(der.ENUMERATED, bytes([_REASON_CODES[reason]])))
    return der.encode(der.SEQUENCE, der.encode(der.SEQUENCE, der.object_identifier("2.5.29.21") + value))


def _utc_time(moment: datetime) -> bytes:
    # RFC 5280 §5.1.2.6: UTCTime for dates through 2049
    return der.encode(0x17, moment.astimezone(UTC).strftime("%y%m%d%H%M%SZ").encode("ascii"))


def _revoked_certificates_der(entries: int, this_update: datetime, first_serial: int) -> bytes:
    # Built as bytes: a million RevokedCertificate objects take ≈ 4 s and serialising them ≈ 2 s
    # more; every entry here is shorter than 128 bytes, so each length is one octet.
    times = [_utc_time(this_update - timedelta(seconds=s)) for s in range(0, 86400, 37)]
    tails = [[t + _reason_extensions(reason) for t in times] for reason in _BENCH_REASONS]
    parts: list[bytes] = []
    append = parts.append
    for index in range(entries):
        serial = first_serial + index
        raw = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
        tail = tails[index % 4][index % len(times)]
        body = b"\x02" + bytes([len(raw)]) + raw + tail
        append(b"\x30" + bytes([len(body)]) + body)
    return der.encode(der.SEQUENCE, b"".join(parts))


def generate_large_crl(
    path: Path, issuer: KeyPair, entries: int = 1_000_000, this_update: datetime | None = None
) -> LargeCrlReport:
    """Write a DER CRL with ``entries`` revoked serials, signed by ``issuer``, for benchmarks.

    The header (issuer, times, extensions) comes from ``cryptography`` with no entries; the
    revokedCertificates list is spliced in as bytes before the TBS is signed.
    """
    started = time.perf_counter()
    now = this_update or datetime.now(UTC)
    template = _crl_builder(issuer, 1, now, []).sign(issuer.key, hashes.SHA256())
    version, algorithm, name, this, next_, extensions = der.sequence_items(template.tbs_certlist_bytes)
    revoked = _revoked_certificates_der(entries, now, first_serial=0x4A50_4B49_0000_0000)
    tbs = der.encode(der.SEQUENCE, version + algorithm + name + this + next_ + revoked + extensions)
    signature = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    signed = der.encode(der.SEQUENCE, tbs + algorithm + der.bit_string(signature))
    path.write_bytes(signed)
    return LargeCrlReport(entries, len(signed), time.perf_counter() - started)
