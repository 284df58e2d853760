"""OCSP responder (RFC 6960) for every issuing CA, through its delegated responder certificate.

Hot path: a request without a nonce gets the pre-signed answer for its certificate (SHA-1 CertID,
what clients send) from memory or the database — no signer call. A revocation here drops the
answers at once (``forget``); a cached "good" answer older than ``cache_ttl`` is still served while
a background check picks up a revocation made by another instance. The refresher signs answers in
batches (one signer call per few hundred) for new certificates, revoked ones and those nearing
their nextUpdate. Everything else is signed on demand: a request with a nonce (echoed, RFC 9654,
unless ``echo_nonce`` is off), a SHA-256 CertID, a certificate revoked a moment ago, a serial we
never issued ("unknown"). A request about another CA's certificate gets ``unauthorized``, an
unparsable one ``malformedRequest`` — both unsigned, as §2.3 allows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from tsunagu.ca.domain.authorities import Authority
from tsunagu.ca.domain.errors import UpstreamUnavailable
from tsunagu.ca.domain.revocation import reason_flag
from tsunagu.ca.domain.service import CertificateAuthority, signer_call
from tsunagu.ca.store.repository import CaRepository, CertificateRecord
from tsunagu.service.runtime import pause
from tsunagu.x509 import OcspCertId, OcspSingleResponse
from tsunagu.x509.algorithms import algorithm_identifier, verify_signature
from tsunagu.x509.ocsp_rfc6960 import ocsp_response, response_data, subject_public_key_bits

log = logging.getLogger(__name__)
# Unsigned OCSPResponse { responseStatus } (§4.2.1), for the errors §2.3 lets go unsigned.
MALFORMED = bytes.fromhex("30030a0101")
INTERNAL_ERROR = bytes.fromhex("30030a0102")
TRY_LATER = bytes.fromhex("30030a0103")
UNAUTHORIZED = bytes.fromhex("30030a0106")
MAX_REQUEST_BYTES = 8_192
MAX_NONCE_BYTES = 128
# The CertID hash algorithms we answer for (and can encode back, tsunagu.x509.ocsp_rfc6960).
CERT_ID_HASHES = frozenset({"sha1", "sha256", "sha384", "sha512"})


@dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSPResponse and whether HTTP caches may keep it until ``next_update`` (RFC 5019 §6.2):
    never an error, an answer echoing a nonce or one about a serial we do not know."""

    der: bytes
    cacheable: bool = False
    this_update: datetime | None = None
    next_update: datetime | None = None


_MALFORMED = OcspAnswer(MALFORMED)
_INTERNAL_ERROR = OcspAnswer(INTERNAL_ERROR)
_TRY_LATER = OcspAnswer(TRY_LATER)
_UNAUTHORIZED = OcspAnswer(UNAUTHORIZED)


@dataclass(frozen=True)
class _Cached:
    answer: OcspAnswer
    good: bool  # the status a revocation elsewhere can change
    next_update: datetime
    check_at: datetime  # when a "good" answer is next checked against the database


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
        self._ids_cache: dict[tuple[str, str], _IssuerIds] = {}
        # Bumped by every forget(): an answer read before a revocation is never cached after it.
        self._generation = 0
        self._revalidating: set[tuple[str, int]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    # -- lookups ------------------------------------------------------------------------------

    def _issuer(self, request: ocsp.OCSPRequest, hash_name: str) -> _IssuerIds | None:
        for authority in self.ca.hierarchy.issuing():
            ids = self._ids(authority, request.hash_algorithm, hash_name)
            if ids.key_hash == request.issuer_key_hash and ids.name_hash == request.issuer_name_hash:
                return ids
        return None

    def _ids(self, authority: Authority, algorithm: hashes.HashAlgorithm, hash_name: str) -> _IssuerIds:
        cached = self._ids_cache.get((authority.id, hash_name))
        if cached is not None and cached.authority.certificate is authority.certificate:
            return cached
        ids = _IssuerIds(
            authority,
            _hash(algorithm, authority.certificate.subject.public_bytes()),
            _hash(algorithm, subject_public_key_bits(authority.certificate)),
        )
        self._ids_cache[(authority.id, hash_name)] = ids
        return ids

    def forget(self, serials: list[str]) -> None:
        """Revoked here: never serve the old answer again. Other instances learn it when they next
        check a cached answer older than cache_ttl (see _revalidate_later)."""
        self._generation += 1
        for serial in serials:
            for hash_name in CERT_ID_HASHES:
                self._cache.pop((hash_name, int(serial, 16)), None)
        self._wake.set()

    # -- the hot path -----------------------------------------------------------------------

    async def respond(self, body: bytes) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest (never raises for bad input)."""
        return (await self.answer(body)).der

    async def answer(self, body: bytes) -> OcspAnswer:
        """The answer to a DER OCSPRequest, with what HTTP caching needs (never raises for bad input)."""
        if len(body) > MAX_REQUEST_BYTES:
            return _MALFORMED
        try:
            # One Request per OCSPRequest (RFC 5019 §2.1.1): cryptography refuses more, so do we.
            request = ocsp.load_der_ocsp_request(body)
            nonce = self._nonce(request)
            serial = request.serial_number
        except (ValueError, TypeError, NotImplementedError, x509.DuplicateExtension):
            return _MALFORMED
        try:
            hash_name = request.hash_algorithm.name
        except UnsupportedAlgorithm:
            return _UNAUTHORIZED  # a CertID we cannot match to any issuer of ours
        ids = self._issuer(request, hash_name) if hash_name in CERT_ID_HASHES else None
        if ids is None:
            return _UNAUTHORIZED
        now = self.ca.clock()
        generation = self._generation
        if nonce is not None and self.echo_nonce:
            return await self._signed_now(request, ids, nonce, now, generation)
        cached = self._cache.get((hash_name, serial))
        if cached is not None and cached.next_update > now:
            if now >= cached.check_at and cached.good:
                self._revalidate_later((hash_name, serial), ids.authority.id)
            return cached.answer
        if hash_name == "sha1":
            try:
                async with self.ca.db.sessions() as session:
                    stored = await CaRepository(session).ocsp(format(serial, "x"))
            except Exception as exc:
                log.warning("OCSP: the database is unavailable", extra={"error": type(exc).__name__})
                return _TRY_LATER
            if stored and stored.issuer_id == ids.authority.id and stored.next_update > now:
                answer = OcspAnswer(stored.der, True, stored.this_update, stored.next_update)
                self._remember((hash_name, serial), answer, stored.status == "good", now, generation)
                return answer
        return await self._signed_now(request, ids, None, now, generation)

    async def _signed_now(
        self,
        request: ocsp.OCSPRequest,
        ids: _IssuerIds,
        nonce: x509.Extension[x509.ExtensionType] | None,
        now: datetime,
        generation: int,
    ) -> OcspAnswer:
        try:
            answer, good = await self._sign_now(request, ids, nonce, now)
        except UpstreamUnavailable:
            log.warning("OCSP on-demand signing: the signer is unavailable")
            return _TRY_LATER
        except Exception as exc:
            log.error("OCSP signing failed", extra={"error": type(exc).__name__})
            return _INTERNAL_ERROR
        if answer.cacheable:
            self._remember(
                (request.hash_algorithm.name, request.serial_number), answer, good, now, generation
            )
        return answer

    async def settle(self) -> None:
        """Wait for the background cache checks under way (shutdown, tests)."""
        await asyncio.gather(*self._background, return_exceptions=True)

    def _revalidate_later(self, key: tuple[str, int], issuer_id: str) -> None:
        """Serve the cached "good" answer now and check in the background (once per key) that no
        other instance revoked the certificate meanwhile: stale-while-revalidate, so the database
        is never on the hot path and cache entries expiring together cause no stampede."""
        if key in self._revalidating:
            return
        self._revalidating.add(key)
        task = asyncio.create_task(self._revalidate(key, issuer_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _revalidate(self, key: tuple[str, int], issuer_id: str) -> None:
        generation = self._generation
        try:
            async with self.ca.db.sessions() as session:
                record = await CaRepository(session).certificate(format(key[1], "x"))
        except Exception as exc:  # a signed answer still within nextUpdate: keep it, retry later
            log.warning("OCSP cache check failed", extra={"error": type(exc).__name__})
            return
        finally:
            self._revalidating.discard(key)
        cached = self._cache.get(key)
        if cached is None or generation != self._generation:
            return
        if record is None or record.issuer_id != issuer_id or record.revoked_at is not None:
            self._cache.pop(key, None)  # revoked elsewhere: the next request gets the truth
        else:
            self._cache[key] = replace(cached, check_at=self._check_at(key[1], self.ca.clock()))

    @staticmethod
    def _nonce(request: ocsp.OCSPRequest) -> x509.Extension[x509.ExtensionType] | None:
        extension: x509.Extension[x509.ExtensionType]
        for extension in request.extensions:
            if isinstance(extension.value, x509.OCSPNonce):
                # RFC 9654 §2.1 (obsoletes RFC 8954's 32): 1 to 128 octets, malformedRequest otherwise
                if not 1 <= len(extension.value.nonce) <= MAX_NONCE_BYTES:
                    raise ValueError("nonce length")
                return extension
        return None

    def _remember(
        self, key: tuple[str, int], answer: OcspAnswer, good: bool, now: datetime, generation: int
    ) -> None:
        if generation != self._generation or answer.next_update is None:
            return  # a revocation happened meanwhile: the answer may be stale, do not keep it
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[key] = _Cached(answer, good, answer.next_update, self._check_at(key[1], now))

    def _check_at(self, serial: int, now: datetime) -> datetime:
        # Spread over ½–1 cache_ttl by serial: answers cached together are not all checked together
        # (a burst of database reads on the event loop would show in the latency tail).
        return now + self.cache_ttl * (0.5 + (serial % 512) / 1024)

    async def _sign_now(
        self,
        request: ocsp.OCSPRequest,
        ids: _IssuerIds,
        nonce: x509.Extension[x509.ExtensionType] | None,
        now: datetime,
    ) -> tuple[OcspAnswer, bool]:
        async with self.ca.db.sessions() as session:
            record = await CaRepository(session).certificate(format(request.serial_number, "x"))
        cert_id = OcspCertId.from_request(request)
        known = record is not None and record.issuer_id == ids.authority.id
        if record is None or not known:
            single = OcspSingleResponse(cert_id, ocsp.OCSPCertStatus.UNKNOWN, now, now + self.validity)
        else:
            single = self._single(cert_id, record, now)
        der = (await self._sign_many([single], ids.authority, now, [nonce] if nonce else []))[0]
        answer = OcspAnswer(der, known and nonce is None, single.this_update, single.next_update)
        return answer, single.status is ocsp.OCSPCertStatus.GOOD

    def _single(self, cert_id: OcspCertId, record: CertificateRecord, now: datetime) -> OcspSingleResponse:
        if record.revoked_at is not None:
            reason = record.revocation_reason or "unspecified"
            return OcspSingleResponse(
                cert_id,
                ocsp.OCSPCertStatus.REVOKED,
                now,
                now + self.validity,
                revocation_time=record.revoked_at,
                # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent
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
            ids = self._ids(issuing, sha1, sha1.name)
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
            await pause(stopping, every_s, self._wake)
        await self.settle()
