"""What jlis-sync does with what J-LIS says: link cards to people, act once on every revocation.

A revocation can reach us twice — pushed at once and listed again in the next CRL — and a crash can
replay a CRL: ``revocation_seen`` (keyed by serial) makes the action happen once, in the same
transaction as its event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509

from tsunagu.db import Database
from tsunagu.events import EventSchema, Outbox
from tsunagu.events.schemas.jlis_sync import CardRevokedV1, ResidentDeceasedV1, ResidentUpdatedV1
from tsunagu.jlis_sync.domain.consent import check_basic4_consent
from tsunagu.jlis_sync.domain.crl_der_walk import count_entries, matching_entries
from tsunagu.jlis_sync.domain.crl_rfc5280 import check_crl
from tsunagu.jlis_sync.domain.errors import (
    CrlRejected,
    InvalidJpkiCertificate,
    LinkConflict,
    LinkUnknown,
    ResidentUnknown,
)
from tsunagu.jlis_sync.domain.push import PushNotice, verify_push
from tsunagu.jlis_sync.jlis.client import Basic4Answer, CardStatus, JlisClient
from tsunagu.jlis_sync.store.repository import JlisRepository, ResidentRecord
from tsunagu.jpki import Basic4, Basic4Missing, basic4_from_certificate
from tsunagu.obs import failpoint

log = logging.getLogger(__name__)
CRL_SOURCE = "signing"

# What a revocation reason or a push type means for the person.
MOVED, DECEASED, LOST, RENEWED, OTHER = "moved", "deceased", "lost", "renewed", "other"
REASONS = {
    "affiliationChanged": MOVED,
    "cessationOfOperation": DECEASED,
    "keyCompromise": LOST,
    "superseded": RENEWED,
}
PUSH_KINDS = {"move": MOVED, "rename": MOVED, "die": DECEASED, "lose": LOST, "renew": RENEWED}


@dataclass(frozen=True)
class Revocation:
    serial: str
    meaning: str
    revoked_at: datetime
    source: str  # push | crl
    new_serial: str | None = None


@dataclass(frozen=True)
class CrlOutcome:
    status: str  # applied | not-modified | already-applied
    crl_number: int | None = None
    entries: int = 0
    matched: int = 0
    acted: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class JlisSyncService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        jlis: JlisClient,
        *,
        signing_ca: x509.Certificate,
        root_ca: x509.Certificate,
        operator_id: str,
        push_max_age: timedelta,
        crl_batch_size: int = 500,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.jlis = jlis
        self.signing_ca = signing_ca
        self.root_ca = root_ca
        self.operator_id = operator_id
        self.push_max_age = push_max_age
        self.clock = clock
        self.crl_batch_size = crl_batch_size
        self._status_cache: dict[str, CardStatus] = {}

    # -- enrollment-time duties (called by ca) ------------------------------------------------

    def _jpki_certificate(self, pem: str) -> tuple[x509.Certificate, Basic4]:
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            certificate.verify_directly_issued_by(self.signing_ca)
        except Exception:
            raise InvalidJpkiCertificate("not issued by the configured J-LIS signing CA") from None
        try:
            return certificate, basic4_from_certificate(certificate)
        except Basic4Missing as missing:
            raise InvalidJpkiCertificate(missing.detail) from None

    async def link(
        self,
        user_number: str,
        certificate_pem: str,
        basic4_consent: str | None,
        *,
        adopt_existing: bool = False,
    ) -> tuple[str, str]:
        """Remember that this JPKI signing certificate belongs to ``user_number``; returns (serial,
        owner). If it is already someone's — proven before, or a new certificate J-LIS linked to a
        known person after a move or renewal — that is a conflict, unless ``adopt_existing``: then
        the existing owner is kept and returned (the CA's "find the person or propose a number")."""
        certificate, info = self._jpki_certificate(certificate_pem)
        if basic4_consent is not None:
            check_basic4_consent(basic4_consent, certificate, self.operator_id)
        serial = format(certificate.serial_number, "x")
        now = self.clock()
        async with self.db.transaction() as session:
            repository = JlisRepository(session)
            owner = await repository.link_owner(serial)
            if owner is not None and owner[0] != user_number:
                if not adopt_existing:
                    raise LinkConflict("the certificate is already linked to someone else")
                user_number = owner[0]
            await repository.add_link(serial, user_number, now)
            known = await repository.resident(user_number)
            consent = basic4_consent or (known.basic4_consent if known else None)
            await repository.save_resident(
                ResidentRecord(
                    user_number, info.name, info.address, info.birth_date, info.sex, consent, None
                ),
                now,
            )
        return serial, user_number

    async def link_owner(self, serial: str) -> tuple[str, str]:
        """(user number, link state) of a JPKI serial; ``LinkUnknown`` if nobody's."""
        if not 0 < len(serial) <= 64 or any(c not in "0123456789abcdefABCDEF" for c in serial):
            raise LinkUnknown("not a certificate serial (hex)")
        async with self.db.sessions() as session:
            owner = await JlisRepository(session).link_owner(serial.lower())
        if owner is None:
            raise LinkUnknown("no platform user is linked to that certificate")
        return owner

    async def card_status(self, certificate_pem: str) -> CardStatus:
        """Revocation status of a JPKI certificate from J-LIS OCSP, cached while the answer is valid."""
        certificate, _ = self._jpki_certificate(certificate_pem)
        serial = format(certificate.serial_number, "x")
        cached = self._status_cache.get(serial)
        if cached and cached.next_update and cached.next_update > self.clock():
            return cached
        status = await self.jlis.card_status(certificate, self.signing_ca)
        if len(self._status_cache) > 100_000:
            self._status_cache.clear()
        self._status_cache[serial] = status
        return status

    async def resident(self, user_number: str) -> ResidentRecord:
        async with self.db.sessions() as session:
            record = await JlisRepository(session).resident(user_number)
        if record is None:
            raise ResidentUnknown("no resident with that user identification number")
        return record

    # -- what J-LIS tells us ------------------------------------------------------------------

    async def receive_push(self, token: str) -> str:
        """Verify and act on a push; returns ``applied``, ``duplicate`` or ``not-ours``."""
        notice: PushNotice = verify_push(token, self.root_ca, now=self.clock(), max_age=self.push_max_age)
        async with self.db.sessions() as session:
            if await JlisRepository(session).push_known(notice.id):
                return "duplicate"
        revocation = Revocation(
            notice.old_serial, PUSH_KINDS[notice.kind], notice.issued_at, "push", notice.new_serial
        )
        return await self.apply(revocation, push_id=notice.id)

    async def sync_crl(self) -> CrlOutcome:
        """Fetch the CRL if it changed, check it, act on every entry about our users, checkpoint."""
        async with self.db.sessions() as session:
            checkpoint = await JlisRepository(session).checkpoint(CRL_SOURCE)
        fetched = await self.jlis.fetch_crl(
            checkpoint.etag if checkpoint else None, checkpoint.last_modified if checkpoint else None
        )
        if fetched.der is None:
            return CrlOutcome("not-modified")
        checked = check_crl(fetched.der, self.signing_ca, now=self.clock())
        if checkpoint and checked.number < checkpoint.crl_number:
            raise CrlRejected(
                f"CRL number {checked.number} is older than the applied {checkpoint.crl_number}"
            )
        if checkpoint and checked.number == checkpoint.crl_number:
            return CrlOutcome("already-applied", checked.number)
        async with self.db.sessions() as session:
            ours = await JlisRepository(session).current_serials()
        entries = count_entries(fetched.der)
        matched = acted = 0
        batch: list[Revocation] = []
        for entry in matching_entries(fetched.der, ours):  # a walk over the DER, not an object per entry
            matched += 1
            batch.append(Revocation(entry.serial, REASONS.get(entry.reason, OTHER), entry.revoked_at, "crl"))
            if len(batch) >= self.crl_batch_size:
                acted += (await self.apply_batch(batch)).count("applied")
                batch = []
                failpoint("jlis_sync.crl.after_batch")
        if batch:
            acted += (await self.apply_batch(batch)).count("applied")
        async with self.db.transaction() as session:
            await JlisRepository(session).save_checkpoint(
                CRL_SOURCE,
                number=checked.number,
                this_update=checked.this_update,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                now=self.clock(),
            )
        log.info(
            "CRL applied",
            extra={"crl_number": checked.number, "entries": entries, "matched": matched, "acted": acted},
        )
        return CrlOutcome("applied", checked.number, entries, matched, acted)

    async def apply(self, revocation: Revocation, *, push_id: str | None = None) -> str:
        """Act once on a revocation; ``applied``, ``duplicate`` or ``not-ours``."""
        return (await self.apply_batch([revocation], push_id=push_id))[0]

    async def apply_batch(
        self, revocations: Sequence[Revocation], *, push_id: str | None = None
    ) -> list[str]:
        """Act once on each revocation of our users' cards, all in one transaction."""
        serials = [revocation.serial for revocation in revocations]
        async with self.db.sessions() as session:
            repository = JlisRepository(session)
            owners = await repository.link_owners(serials)
            seen = await repository.seen_serials(serials)
            people = await repository.residents(set(owners.values()))
        todo = [
            r
            for r in revocations
            if r.serial in owners and r.serial not in seen and owners[r.serial] in people
        ]
        latest: dict[str, Basic4Answer] = {}
        for revocation in todo:  # network calls before the transaction; a crash just repeats them
            consent = people[owners[revocation.serial]].basic4_consent
            if revocation.meaning == MOVED and consent:
                latest[revocation.serial] = await self.jlis.latest_basic4(revocation.serial, consent)
        now = self.clock()
        async with self.db.transaction() as session:
            repository = JlisRepository(session)
            if push_id is not None:
                await repository.mark_push(push_id, now)
            fresh = await repository.mark_revocations(
                [
                    {
                        "serial": r.serial,
                        "reason": r.meaning,
                        "source": r.source,
                        "revoked_at": r.revoked_at,
                        "processed_at": now,
                    }
                    for r in todo
                ]
            )
            plan = _Plan()
            applied: set[str] = set()
            for revocation in todo:
                if revocation.serial in fresh and revocation.serial not in applied:
                    applied.add(revocation.serial)
                    plan.add(
                        revocation, people[owners[revocation.serial]], latest.get(revocation.serial), now
                    )
            await repository.end_links(plan.ended)
            await repository.add_links(plan.linked)
            await repository.save_residents(plan.residents, now)
            await self.outbox.add_many(session, plan.events)
        return [
            "applied" if r.serial in applied else "duplicate" if r.serial in owners else "not-ours"
            for r in revocations
        ]


@dataclass
class _Plan:
    """The writes a batch of revocations makes, gathered so each kind is one statement."""

    ended: list[dict[str, str | None]] = field(default_factory=list)
    linked: list[dict[str, object]] = field(default_factory=list)
    residents: list[ResidentRecord] = field(default_factory=list)
    events: list[EventSchema] = field(default_factory=list)

    def add(
        self, revocation: Revocation, person: ResidentRecord, latest: Basic4Answer | None, now: datetime
    ) -> None:
        common = {
            "user_number": person.user_number,
            "effective_at": revocation.revoked_at,
            "old_jpki_serial": revocation.serial,
            "source": revocation.source,
        }
        if revocation.meaning == DECEASED:
            self.ended.append({"serial": revocation.serial, "state": "revoked", "superseded_by": None})
            self.residents.append(replace(person, deceased_at=revocation.revoked_at))
            self.events.append(ResidentDeceasedV1(**common))
            return
        new_serial = latest.current_serial if latest else revocation.new_serial
        self.ended.append(
            {
                "serial": revocation.serial,
                "state": "superseded" if new_serial else "revoked",
                "superseded_by": new_serial,
            }
        )
        if new_serial:
            self.linked.append(
                {
                    "serial": new_serial,
                    "user_number": person.user_number,
                    "state": "current",
                    "linked_at": now,
                }
            )
        if revocation.meaning == MOVED:
            changed: list[str] = []
            if latest is not None:
                changed = latest.info.differences(
                    Basic4(person.name, person.address, person.birth_date, person.sex)
                )
                self.residents.append(
                    replace(
                        person,
                        name=latest.info.name,
                        address=latest.info.address,
                        birth_date=latest.info.birth_date,
                        sex=latest.info.sex,
                    )
                )
            self.events.append(
                ResidentUpdatedV1(
                    **common,
                    changed_fields=changed,
                    basic4_available=latest is not None,
                    new_jpki_serial=new_serial,
                )
            )
            return
        reason = {LOST: "lost", RENEWED: "renewed"}.get(revocation.meaning, "other")
        self.events.append(CardRevokedV1(**common, reason=reason, new_jpki_serial=new_serial))
