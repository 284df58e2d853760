"""CRLs (RFC 5280 §5) per CA: signed through the signer, numbered, published on change and on a
schedule, served from memory.

A CA's CRL is regenerated when a revocation happened since the last one (the authority's
revocation count moved), when half of its validity has passed, or when there is none. The number
is the previous one plus one, written with the CRL in one transaction; a twin publisher racing
for the same number loses on the primary key and simply serves the winner's CRL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError

from tsunagu.ca.domain.authorities import Authority
from tsunagu.ca.domain.errors import CertificateNotFound
from tsunagu.ca.domain.revocation import reason_flag
from tsunagu.ca.domain.service import CertificateAuthority, signer_call
from tsunagu.ca.store.repository import CaRepository, CrlRecord
from tsunagu.x509 import sign_crl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedCrl:
    issuer_id: str
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'

    @classmethod
    def of(cls, record: CrlRecord) -> PublishedCrl:
        return cls(record.issuer_id, record.number, record.this_update, record.next_update, record.der)


def revoked_entries(rows: list[tuple[str, datetime, str]]) -> list[x509.RevokedCertificate]:
    """CRL entries; reason ``unspecified`` is left out, as RFC 5280 §5.3.1 asks."""
    entries = []
    for serial, revoked_at, reason in rows:
        builder = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(revoked_at)
        if reason != "unspecified":
            builder = builder.add_extension(x509.CRLReason(reason_flag(reason)), critical=False)
        entries.append(builder.build())
    return entries


def crl_builder(
    authority: Authority,
    number: int,
    entries: list[x509.RevokedCertificate],
    now: datetime,
    validity: timedelta,
) -> x509.CertificateRevocationListBuilder:
    ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateRevocationListBuilder(
            issuer_name=authority.certificate.subject,
            last_update=now,
            next_update=now + validity,
            revoked_certificates=entries,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )


class CrlPublisher:
    def __init__(
        self, ca: CertificateAuthority, validity: timedelta, *, lint_entries: int | None = 1000
    ) -> None:
        self.ca = ca
        self.validity = validity
        self.lint_entries = lint_entries
        self._published: dict[str, PublishedCrl] = {}
        self._checked: dict[str, datetime] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A revocation committed: publish now rather than at the next scheduled look."""
        self._wake.set()

    def _due(self, authority: Authority, latest: CrlRecord | None, now: datetime) -> bool:
        if latest is None:
            return True
        if latest.revocation_count != authority.revocation_count:
            return True
        return now >= latest.this_update + (latest.next_update - latest.this_update) / 2

    async def publish_due(self) -> list[PublishedCrl]:
        """Regenerate every CRL that is due; returns the ones made now."""
        async with self._lock:
            hierarchy = await self.ca.load()
            made = []
            for authority in hierarchy.crl_issuers():
                async with self.ca.db.sessions() as session:
                    latest = await CaRepository(session).latest_crl(authority.id)
                if latest is not None:
                    self._published[authority.id] = PublishedCrl.of(latest)
                if self._due(authority, latest, self.ca.clock()):
                    published = await self._generate(authority, (latest.number + 1) if latest else 1)
                    if published is not None:
                        made.append(published)
            return made

    async def _generate(self, authority: Authority, number: int) -> PublishedCrl | None:
        async with self.ca.db.sessions() as session:
            rows = await CaRepository(session).revoked_entries(authority.id)
        now = self.ca.clock()
        entries = await asyncio.to_thread(revoked_entries, rows)
        builder = crl_builder(authority, number, entries, now, self.validity)
        remote = self.ca.signer.remote_signer(key_id=authority.key_id, algorithm=authority.algorithm)
        lint_builder = None
        if self.lint_entries is not None and len(entries) > self.lint_entries:
            # pkilint walks every entry in Python; a large CRL is linted as a CRL with the same
            # header, extensions and the first lint_entries entries (all entries share one shape).
            lint_builder = crl_builder(authority, number, entries[: self.lint_entries], now, self.validity)
            await self._lint_sample(lint_builder, authority)
        crl = await signer_call(
            lambda: sign_crl(
                builder,
                remote,
                issuer_public_key=authority.certificate.public_key(),  # type: ignore[arg-type]
                check_draft=None if lint_builder is not None else self.ca.linter.check_crl,
            )
        )
        der = crl.public_bytes(Encoding.DER)
        try:
            async with self.ca.db.transaction() as session:
                await CaRepository(session).add_crl(
                    issuer_id=authority.id,
                    number=number,
                    this_update=now,
                    next_update=now + self.validity,
                    revocation_count=authority.revocation_count,
                    entries=len(entries),
                    der=der,
                )
        except IntegrityError:
            log.info("CRL number taken by a twin publisher", extra={"issuer": authority.id, "number": number})
            return None
        published = PublishedCrl(authority.id, number, now, now + self.validity, der)
        self._published[authority.id] = published
        log.info("CRL published", extra={"issuer": authority.id, "number": number, "entries": len(entries)})
        return published

    async def _lint_sample(
        self, builder: x509.CertificateRevocationListBuilder, authority: Authority
    ) -> None:
        from tsunagu.x509.algorithms import signature_algorithm_for, throwaway_key

        hash_algorithm, padding = signature_algorithm_for(authority.algorithm)
        draft = await asyncio.to_thread(
            builder.sign, throwaway_key(authority.algorithm), hash_algorithm, rsa_padding=padding
        )
        await asyncio.to_thread(self.ca.linter.check_crl, draft.public_bytes(Encoding.DER))

    async def current(self, issuer_id: str, recheck: timedelta = timedelta(seconds=5)) -> PublishedCrl:
        """The newest CRL, from memory; the database is asked again after ``recheck`` (another
        instance may have published)."""
        published, now = self._published.get(issuer_id), self.ca.clock()
        checked = self._checked.get(issuer_id)
        if published is None or checked is None or now - checked > recheck:
            self._checked[issuer_id] = now
            async with self.ca.db.sessions() as session:
                latest = await CaRepository(session).latest_crl(issuer_id)
            if latest is None:
                raise CertificateNotFound("no CRL for that CA")
            published = PublishedCrl.of(latest)
            self._published[issuer_id] = published
        return published

    async def run(self, every_s: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()  # a wake during publication is kept for the next round
            try:
                await self.publish_due()
            except Exception as exc:  # logged and retried next round; the old CRL stays valid
                log.error("CRL publication failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stopping.wait(), self._wake.wait()), every_s)


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
