"""OCSP responder (RFC 6960) for every issuing CA, through its delegated responder certificate.

Hot path: a request without a nonce gets the pre-signed answer for its certificate (SHA-1 CertID,
what clients send) from memory or the database — no signer call. The refresher signs answers in
batches (one signer call per few hundred) for new certificates, revoked ones and those nearing
their nextUpdate. Everything else is signed on demand: a request with a nonce (echoed, RFC 8954,
unless ``echo_nonce`` is off), a SHA-256 CertID, a certificate revoked a moment ago, a serial we
never issued ("unknown"). A request about another CA's certificate gets ``unauthorized``, an
unparsable one ``malformedRequest`` — both unsigned, as §2.3 allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from tsunagu.ca.domain.authorities import Authority
from tsunagu.ca.domain.revocation import reason_flag
from tsunagu.ca.domain.service import CertificateAuthority, signer_call
from tsunagu.ca.store.repository import CaRepository, CertificateRecord
from tsunagu.x509 import OcspCertId, OcspSingleResponse
from tsunagu.x509.algorithms import algorithm_identifier, verify_signature
from tsunagu.x509.ocsp_rfc6960 import ocsp_response, response_data, subject_public_key_bits

log = logging.getLogger(__name__)
MALFORMED = bytes.fromhex("30030a0101")  # OCSPResponse { responseStatus malformedRequest }
INTERNAL_ERROR = bytes.fromhex("30030a0102")
UNAUTHORIZED = bytes.fromhex("30030a0106")
MAX_REQUEST_BYTES = 8_192


@dataclass(frozen=True)
class _Cached:
    der: bytes
    next_update: datetime
    loaded_at: datetime


@dataclass(frozen=True)
class _IssuerIds:
    authority: Authority
    name_hash: bytes
    key_hash: bytes


def _hash(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


class OcspResponder:
    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        validity: timedelta,
        refresh_before: timedelta,
        echo_nonce: bool = True,
        batch_size: int = 500,
        cache_ttl: timedelta = timedelta(seconds=5),
        max_cached: int = 500_000,
    ) -> None:
        self.ca = ca
        self.validity = validity
        self.refresh_before = min(refresh_before, validity / 2)
        self.echo_nonce = echo_nonce
        self.batch_size = batch_size
        self.cache_ttl = cache_ttl
        self.max_cached = max_cached
        self._cache: dict[tuple[str, int], _Cached] = {}
        self._wake = asyncio.Event()

    # -- lookups ------------------------------------------------------------------------------

    def _issuer(self, request: ocsp.OCSPRequest) -> _IssuerIds | None:
        algorithm = request.hash_algorithm
        for authority in self.ca.hierarchy.issuing():
            ids = self._ids(authority, algorithm)
            if ids.key_hash == request.issuer_key_hash and ids.name_hash == request.issuer_name_hash:
                return ids
        return None

    def _ids(self, authority: Authority, algorithm: hashes.HashAlgorithm) -> _IssuerIds:
        return _IssuerIds(
            authority,
            _hash(algorithm, authority.certificate.subject.public_bytes()),
            _hash(algorithm, subject_public_key_bits(authority.certificate)),
        )

    def forget(self, serials: list[str]) -> None:
        """Revoked here: never serve the old answer again (other instances: after cache_ttl)."""
        for serial in serials:
            for hash_name in ("sha1", "sha256", "sha384", "sha512"):
                self._cache.pop((hash_name, int(serial, 16)), None)
        self._wake.set()

    # -- the hot path -----------------------------------------------------------------------

    async def respond(self, body: bytes) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest (never raises for bad input)."""
        if len(body) > MAX_REQUEST_BYTES:
            return MALFORMED
        try:
            request = ocsp.load_der_ocsp_request(body)
            nonce = self._nonce(request)
            serial = request.serial_number
            hash_name = request.hash_algorithm.name
        except (ValueError, x509.ExtensionNotFound, NotImplementedError):
            return MALFORMED
        ids = self._issuer(request)
        if ids is None:
            return UNAUTHORIZED
        now = self.ca.clock()
        if nonce is None or not self.echo_nonce:
            cached = self._cache.get((hash_name, serial))
            if cached and now - cached.loaded_at < self.cache_ttl and cached.next_update > now:
                return cached.der
            if hash_name == "sha1":
                async with self.ca.db.sessions() as session:
                    stored = await CaRepository(session).ocsp(format(serial, "x"))
                if stored and stored.issuer_id == ids.authority.id and stored.next_update > now:
                    self._remember((hash_name, serial), stored.der, stored.next_update, now)
                    return stored.der
        try:
            der, next_update = await self._sign_now(request, ids, nonce, now)
        except Exception as exc:
            log.error("OCSP signing failed", extra={"error": type(exc).__name__})
            return INTERNAL_ERROR
        if nonce is None or not self.echo_nonce:
            self._remember((hash_name, serial), der, next_update, now)
        return der

    @staticmethod
    def _nonce(request: ocsp.OCSPRequest) -> x509.Extension[x509.ExtensionType] | None:
        extension: x509.Extension[x509.ExtensionType]
        for extension in request.extensions:
            if isinstance(extension.value, x509.OCSPNonce):
                if not 1 <= len(extension.value.nonce) <= 32:  # RFC 8954 §2.1
                    raise ValueError("nonce length")
                return extension
        return None

    def _remember(self, key: tuple[str, int], der: bytes, next_update: datetime, now: datetime) -> None:
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[key] = _Cached(der, next_update, now)

    async def _sign_now(
        self,
        request: ocsp.OCSPRequest,
        ids: _IssuerIds,
        nonce: x509.Extension[x509.ExtensionType] | None,
        now: datetime,
    ) -> tuple[bytes, datetime]:
        async with self.ca.db.sessions() as session:
            record = await CaRepository(session).certificate(format(request.serial_number, "x"))
        cert_id = OcspCertId.from_request(request)
        if record is None or record.issuer_id != ids.authority.id:
            single = OcspSingleResponse(cert_id, ocsp.OCSPCertStatus.UNKNOWN, now, now + self.validity)
        else:
            single = self._single(cert_id, record, now)
        der = (await self._sign_many([single], ids.authority, now, [nonce] if nonce else []))[0]
        return der, single.next_update or now

    def _single(self, cert_id: OcspCertId, record: CertificateRecord, now: datetime) -> OcspSingleResponse:
        if record.revoked_at is not None:
            reason = record.revocation_reason or "unspecified"
            return OcspSingleResponse(
                cert_id,
                ocsp.OCSPCertStatus.REVOKED,
                now,
                now + self.validity,
                revocation_time=record.revoked_at,
                revocation_reason=None if reason == "unspecified" else reason_flag(reason),
            )
        return OcspSingleResponse(cert_id, ocsp.OCSPCertStatus.GOOD, now, now + self.validity)

    async def _sign_many(
        self,
        singles: list[OcspSingleResponse],
        issuing: Authority,
        now: datetime,
        extensions: list[x509.Extension[x509.ExtensionType]],
    ) -> list[bytes]:
        responder = self.ca.hierarchy.ocsp_responder(issuing.id)
        if responder is None:
            raise RuntimeError(f"no OCSP responder for {issuing.id}")
        tbs = [
            response_data(
                [single],
                responder_certificate=responder.certificate,
                responder_id=ocsp.OCSPResponderEncoding.HASH,
                produced_at=now,
                extensions=extensions,
            )
            for single in singles
        ]
        signatures: list[bytes] = await signer_call(
            lambda: self.ca.signer.sign_batch(
                tbs, key_id=responder.key_id, algorithm=responder.algorithm, signature_format="der"
            )
        )
        public_key = responder.certificate.public_key()
        algorithm = algorithm_identifier(responder.algorithm)
        answers = []
        for data, signature in zip(tbs, signatures, strict=True):
            verify_signature(responder.algorithm, public_key, signature, data)
            answers.append(ocsp_response(data, algorithm, signature, [responder.certificate]))
        return answers

    # -- the refresher ------------------------------------------------------------------------

    async def refresh_once(self) -> int:
        """Pre-sign answers that are missing or due (one batch per issuer); returns how many."""
        now = self.ca.clock()
        async with self.ca.db.sessions() as session:
            due = await CaRepository(session).certificates_needing_ocsp(
                now, now + self.refresh_before, self.batch_size
            )
        by_issuer: dict[str, list[CertificateRecord]] = {}
        for record in due:
            by_issuer.setdefault(record.issuer_id, []).append(record)
        rows = []
        for issuer_id, records in by_issuer.items():
            issuing = self.ca.hierarchy.get(issuer_id)
            if issuing is None:
                continue
            sha1 = hashes.SHA1()  # noqa: S303 - the CertID clients send, an identifier, not a signature
            ids = self._ids(issuing, sha1)
            singles = [
                self._single(OcspCertId(sha1, ids.name_hash, ids.key_hash, int(r.serial, 16)), r, now)
                for r in records
            ]
            answers = await self._sign_many(singles, issuing, now, [])
            for record, single, der in zip(records, singles, answers, strict=True):
                rows.append(
                    {
                        "serial": record.serial,
                        "issuer_id": issuer_id,
                        "status": "revoked" if record.revoked_at else "good",
                        "this_update": now,
                        "next_update": single.next_update,
                        "der": der,
                    }
                )
        if rows:
            async with self.ca.db.transaction() as session:
                await CaRepository(session).save_ocsp_if_current(rows)
            for row in rows:
                self._cache.pop(("sha1", int(str(row["serial"]), 16)), None)
        return len(rows)

    async def run(self, every_s: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()
            try:
                while await self.refresh_once() >= self.batch_size and not stopping.is_set():
                    pass
            except Exception as exc:  # retried next round; on-demand signing covers the gap
                log.error("OCSP refresh failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._wake.wait())]
                try:
                    await asyncio.wait_for(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED), every_s)
                finally:
                    for wait in waits:
                        wait.cancel()
