"""CRLs (RFC 5280 §5) per CA: signed through the signer, numbered, published on change and on a
schedule, served from memory.

A CA's CRL is regenerated when a revocation happened since the last one (the authority's
revocation count is past the one the CRL covered), when half of its validity has passed, or when
there is none. The number is the previous one plus one, written with the CRL in one transaction; a
twin publisher racing for the same number loses on the primary key, looks again, and publishes the
next number only if the winner's CRL does not cover the revocations it saw.

A CRL may hold a million entries (≈ 50 MB of DER). The entries are written as DER directly
(:func:`revoked_certificates_der`) into a draft whose header ``cryptography`` writes; the lint
reads the header and a sample of entries (:meth:`Linter.check_crl`); the signer is sent the
SHA-256 of the TBSCertList cut from the draft — the bytes themselves exceed its 64 KiB payload
limit from ≈ 1,600 entries.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError

from tsunagu.ca.domain.authorities import Authority
from tsunagu.ca.domain.errors import CertificateNotFound
from tsunagu.ca.domain.service import CertificateAuthority, signer_call
from tsunagu.ca.store.repository import CaRepository, RevokedColumns
from tsunagu.clients.signer import SignerClient
from tsunagu.service.runtime import pause
from tsunagu.x509 import RemoteSigner, der
from tsunagu.x509.algorithms import check_issuer_key, signature_algorithm_for, throwaway_key, verify_signature
from tsunagu.x509.remote import DraftCheck

log = logging.getLogger(__name__)
SERIAL_LIMIT = 1 << 159  # RFC 5280 §4.1.2.2: positive, at most 20 octets
TWIN_ATTEMPTS = 3


@dataclass(frozen=True)
class PublishedCrl:
    issuer_id: str
    number: int
    this_update: datetime
    next_update: datetime
    revocation_count: int  # the authority's revocation count this CRL covers
    der: bytes

    @functools.cached_property
    def etag(self) -> str:
        # computed once: the DER of a large CRL is tens of megabytes
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'


# --- building ------------------------------------------------------------------------------------

# CRLReason (RFC 5280 §5.3.1); ``unspecified`` (0) is never written: the extension is left out.
REASON_CODES = {
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
_CRL_REASON_OID = der.object_identifier("2.5.29.21")
_UTC_TIME, _DAY_S = 0x17, 86_400


def _entry_extensions(reason: str) -> bytes:
    """crlEntryExtensions holding a non-critical reasonCode (``critical`` FALSE is the DEFAULT
    and so absent in DER), or nothing for ``unspecified``."""
    if reason == "unspecified":
        return b""
    value = der.encode(der.OCTET_STRING, der.encode(der.ENUMERATED, bytes([REASON_CODES[reason]])))
    return der.encode(der.SEQUENCE, der.encode(der.SEQUENCE, _CRL_REASON_OID + value))


def _date_prefix(day: int) -> bytes:
    """Tag, length and date digits of a revocationDate on ``day`` (days since 1970-01-01, UTC):
    UTCTime from 1950 through 2049, GeneralizedTime otherwise (RFC 5280 §5.1.2.6, §4.1.2.5)."""
    moment = date(1970, 1, 1) + timedelta(days=day)
    if 1950 <= moment.year < 2050:
        return bytes([_UTC_TIME, 13]) + moment.strftime("%y%m%d").encode("ascii")
    return bytes([der.GENERALIZED_TIME, 15]) + moment.strftime("%Y%m%d").encode("ascii")


@functools.cache
def _times_of_day() -> list[bytes]:
    """b"HHMMSSZ" for every second of a day (86,400 short bytes, made once)."""
    return [f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}Z".encode("ascii") for s in range(_DAY_S)]


def revoked_certificates_der(revoked: RevokedColumns) -> bytes:
    """The ``revokedCertificates`` field of a TBSCertList (RFC 5280 §5.1) as DER, in the order
    given; empty when there is nothing revoked (the field is then absent).

    Written as bytes, byte for byte what ``cryptography``'s CRL builder writes for the same
    entries (a test compares them): a million ``RevokedCertificate`` objects, the builder and
    the DER take ≈ 7 s, this ≈ 1.3 s. It keeps pkilint's per-entry rules itself, as the lint sees
    only the first entries: the serial is positive and at most 20 octets (§4.1.2.2), the date is
    UTC to the second in the right time type, and the only entry extension is a non-critical
    reasonCode, absent for ``unspecified`` (§5.3.1).
    """
    if not revoked.serials:
        return b""
    serials = [int(serial, 16) for serial in revoked.serials]
    if not (min(serials) > 0 and max(serials) < SERIAL_LIMIT):
        raise ValueError("a revoked serial is outside 1 .. 2^159-1 (RFC 5280 §4.1.2.2)")
    seconds = [
        math.floor((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()) for at in revoked.revoked_at
    ]
    tails = {reason: _entry_extensions(reason) for reason in set(revoked.reasons)}
    times_of_day = _times_of_day()
    dates: dict[int, bytes] = {}  # day → date prefix
    entries: list[bytes] = []
    append = entries.append
    for serial, second, reason in zip(serials, seconds, revoked.reasons, strict=True):
        day, second_of_day = divmod(second, _DAY_S)
        date_prefix = dates.get(day)
        if date_prefix is None:
            date_prefix = dates[day] = _date_prefix(day)
        raw = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # minimal, sign bit clear
        # at most 2 + 20 + 17 + 14 octets: every length is in the short form
        body = b"\x02" + bytes((len(raw),)) + raw + date_prefix + times_of_day[second_of_day] + tails[reason]
        append(b"\x30" + bytes((len(body),)) + body)
    return der.encode(der.SEQUENCE, b"".join(entries))


def crl_builder(
    authority: Authority,
    number: int,
    now: datetime,
    validity: timedelta,
    entries: Sequence[x509.RevokedCertificate] = (),
) -> x509.CertificateRevocationListBuilder:
    ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateRevocationListBuilder(
            issuer_name=authority.certificate.subject,
            last_update=now,
            next_update=now + validity,
            revoked_certificates=list(entries),
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )


def draft_crl_der(
    authority: Authority, number: int, revoked_der: bytes, now: datetime, validity: timedelta
) -> bytes:
    """The CRL, signed with a throwaway key of the authority's key type, as DER: ``cryptography``
    writes the header and extensions (no entries), ``revoked_der`` (from
    :func:`revoked_certificates_der`) goes in before crlExtensions."""
    hash_algorithm, rsa_padding = signature_algorithm_for(authority.algorithm)
    template = (
        crl_builder(authority, number, now, validity)
        .sign(throwaway_key(authority.algorithm), hash_algorithm, rsa_padding=rsa_padding)
        .public_bytes(Encoding.DER)
    )
    if not revoked_der:
        return template
    tbs, algorithm, signature = der.sequence_items(template)
    # version, signature, issuer, thisUpdate, nextUpdate, [revokedCertificates], crlExtensions [0]
    fields = der.sequence_items(tbs)
    if fields[-1][0] != der.CONTEXT_0:
        raise der.DerError("the template CRL has no crlExtensions")
    tbs = der.encode(der.SEQUENCE, b"".join(fields[:-1]) + revoked_der + fields[-1])
    return der.encode(der.SEQUENCE, tbs + algorithm + signature)


# --- signing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestSigner:
    """A CA key in the signer, as a :class:`tsunagu.x509.RemoteSigner` that sends the SHA-256 of
    the data rather than the data. ES256, RS256 and PS256 all sign a SHA-256 hash, and the signer
    accepts their digests; it logs the digest either way."""

    client: SignerClient
    key_id: str
    algorithm: str

    async def sign(self, payload: bytes) -> bytes:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(payload).digest())
        return await self.client.sign(
            digest=digest, key_id=self.key_id, algorithm=self.algorithm, signature_format="der"
        )


class Stopwatch:
    """Seconds per stage, each lap counting from the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def _tbs_and_algorithm(draft_der: bytes) -> tuple[bytes, bytes]:
    tbs, algorithm, placeholder = der.sequence_items(draft_der)
    der.content_of(placeholder, der.BIT_STRING)  # the shape is CertificateList (RFC 5280 §5.1)
    return tbs, algorithm


async def sign_crl_draft(
    draft_der: bytes,
    signer: RemoteSigner,
    *,
    issuer_public_key: CertificatePublicKeyTypes,
    check_draft: DraftCheck | None = None,
    stopwatch: Stopwatch | None = None,
) -> bytes:
    """Sign the draft CRL (DER, from :func:`draft_crl_der`) with ``signer``; returns the DER.

    The steps and checks of :func:`tsunagu.x509.sign_crl` — ``check_draft`` on the draft's DER
    before the signer is asked, the signature verified with ``issuer_public_key``, then put in
    place of the throwaway one — but the TBSCertList is cut from the DER: ``sign_crl`` asks
    ``cryptography`` for ``tbs_certlist_bytes`` and twice for the DER and loads the result again,
    each a full re-encoding of ≈ 2–4 s for a million entries. Laps ``lint`` and ``sign``.
    """
    check_issuer_key(signer.algorithm, issuer_public_key)
    if check_draft is not None:
        await asyncio.to_thread(check_draft, draft_der)
    if stopwatch is not None:
        stopwatch.lap("lint")
    tbs, algorithm = await asyncio.to_thread(_tbs_and_algorithm, draft_der)
    signature = await signer.sign(tbs)
    await asyncio.to_thread(verify_signature, signer.algorithm, issuer_public_key, signature, tbs)
    signed = der.encode(der.SEQUENCE, tbs + algorithm + der.bit_string(signature))
    if stopwatch is not None:
        stopwatch.lap("sign")
    return signed


# --- publishing ----------------------------------------------------------------------------------


class CrlPublisher:
    """Publishes the CRL of every CA (root and issuing CAs) and serves the newest from memory.

    ``lint_entries``: a CRL with more entries is linted from its first ``lint_entries`` (see
    :meth:`Linter.lint_crl`; every entry is written by :func:`revoked_certificates_der`). ``last_stages``
    holds the seconds per stage (read, build, lint, sign, store) of the last CRL made per CA.
    """

    def __init__(
        self, ca: CertificateAuthority, validity: timedelta, *, lint_entries: int | None = 1000
    ) -> None:
        self.ca = ca
        self.validity = validity
        self.lint_entries = lint_entries
        self.last_stages: dict[str, dict[str, float]] = {}
        self._published: dict[str, PublishedCrl] = {}
        self._checked: dict[str, datetime] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A revocation committed: publish now rather than at the next scheduled look."""
        self._wake.set()

    @staticmethod
    def _due(authority: Authority, latest: PublishedCrl | None, now: datetime) -> bool:
        if latest is None:
            return True
        if latest.revocation_count < authority.revocation_count:
            return True
        return now >= latest.this_update + (latest.next_update - latest.this_update) / 2

    async def publish_due(self) -> list[PublishedCrl]:
        """Regenerate every CRL that is due; returns the ones made now. A CA whose CRL fails (lint,
        signer) does not hold up the others; the first failure is raised once all were tried."""
        async with self._lock:
            hierarchy = await self.ca.load()
            made: list[PublishedCrl] = []
            failures: list[Exception] = []
            for authority in hierarchy.crl_issuers():
                try:
                    published = await self._publish_if_due(authority)
                except Exception as exc:  # the previous CRL stays served until it expires
                    log.error(
                        "CRL not published", extra={"issuer": authority.id, "error": type(exc).__name__}
                    )
                    failures.append(exc)
                    continue
                if published is not None:
                    made.append(published)
            if failures:
                raise failures[0]
            return made

    async def _publish_if_due(self, authority: Authority) -> PublishedCrl | None:
        for _attempt in range(TWIN_ATTEMPTS):
            latest = await self._latest(authority.id)
            if not self._due(authority, latest, self.ca.clock()):
                return None
            published = await self._generate(authority, latest.number + 1 if latest else 1)
            if published is not None:
                return published
        log.warning("CRL number taken by twins every time", extra={"issuer": authority.id})
        return None

    async def _latest(self, issuer_id: str) -> PublishedCrl | None:
        """The newest stored CRL; its DER is fetched only when it is not the one in memory."""
        async with self.ca.db.sessions() as session:
            repository = CaRepository(session)
            header = await repository.latest_crl_header(issuer_id)
            if header is None:
                return None
            known = self._published.get(issuer_id)
            if known is not None and known.number == header.number:
                return known
            crl_der = await repository.crl_der(issuer_id, header.number)
        if crl_der is None:
            return None
        published = PublishedCrl(
            issuer_id, header.number, header.this_update, header.next_update, header.revocation_count, crl_der
        )
        self._published[issuer_id] = published
        return published

    def _draft(self, authority: Authority, number: int, revoked: RevokedColumns, now: datetime) -> bytes:
        # in a worker thread: the event loop goes on serving (between GIL switches)
        return draft_crl_der(authority, number, revoked_certificates_der(revoked), now, self.validity)

    async def _generate(self, authority: Authority, number: int) -> PublishedCrl | None:
        """Make, lint, sign and store CRL ``number``; None if a twin publisher stored it first."""
        stopwatch = Stopwatch()
        async with self.ca.db.sessions() as session:
            revoked = await CaRepository(session).revoked_columns(authority.id)
        stopwatch.lap("read")
        now, entries = self.ca.clock(), len(revoked)
        draft = await asyncio.to_thread(self._draft, authority, number, revoked, now)
        del revoked
        stopwatch.lap("build")
        signer = DigestSigner(self.ca.signer, authority.key_id, authority.algorithm)
        lint = functools.partial(self.ca.linter.check_crl, max_entries_linted=self.lint_entries)
        crl_der: bytes = await signer_call(
            functools.partial(
                sign_crl_draft,
                draft,
                signer,
                issuer_public_key=authority.certificate.public_key(),
                check_draft=lint,
                stopwatch=stopwatch,
            )
        )
        del draft
        try:
            async with self.ca.db.transaction() as session:
                await CaRepository(session).add_crl(
                    issuer_id=authority.id,
                    number=number,
                    this_update=now,
                    next_update=now + self.validity,
                    revocation_count=authority.revocation_count,
                    entries=entries,
                    der=crl_der,
                )
        except IntegrityError:
            log.info("CRL number taken by a twin publisher", extra={"issuer": authority.id, "number": number})
            return None
        stopwatch.lap("store")
        published = PublishedCrl(
            authority.id, number, now, now + self.validity, authority.revocation_count, crl_der
        )
        self._published[authority.id] = published
        self.last_stages[authority.id] = stopwatch.seconds
        log.info(
            "CRL published",
            extra={
                "issuer": authority.id,
                "number": number,
                "entries": entries,
                "seconds": stopwatch.seconds,
            },
        )
        return published

    # --- serving ---------------------------------------------------------------------------------

    async def current(self, issuer_id: str, recheck: timedelta = timedelta(seconds=5)) -> PublishedCrl:
        """The newest CRL of a CA, from memory; the database is asked again after ``recheck``
        (another instance may have published). Raises CertificateNotFound for anything but a
        root or issuing CA of the hierarchy, or before its first CRL."""
        if not any(authority.id == issuer_id for authority in self.ca.hierarchy.crl_issuers()):
            raise CertificateNotFound("no such CA")
        published, now = self._published.get(issuer_id), self.ca.clock()
        checked = self._checked.get(issuer_id)
        if published is None or checked is None or now - checked > recheck:
            latest = await self._latest(issuer_id)
            self._checked[issuer_id] = now
            if latest is None:
                raise CertificateNotFound("no CRL for that CA yet")
            published = latest
        return published

    async def run(self, every_s: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()  # a wake during publication is kept for the next round
            try:
                await self.publish_due()
            except Exception as exc:  # logged and retried next round; the old CRL stays valid
                log.error("CRL publication failed", extra={"error": type(exc).__name__})
            await pause(stopping, every_s, self._wake)
