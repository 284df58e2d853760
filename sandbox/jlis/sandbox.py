""":class:`JlisSandbox`, the domain object behind the HTTP API and the in-process test API."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tsunagu.jpki import Basic4
from tsunagu.pkcs11 import Pkcs11Token
from tsunagu.sandbox.jlis import push
from tsunagu.sandbox.jlis.basic4 import latest_basic4, make_consent
from tsunagu.sandbox.jlis.cards import (
    CardKeys,
    FileCardKeys,
    KeyFactory,
    Pkcs11CardKeys,
    check_card_request,
    issue_auth_certificate,
    issue_signing_certificate,
)
from tsunagu.sandbox.jlis.crl import CrlDocument, CrlPublisher, LargeCrlReport, generate_large_crl
from tsunagu.sandbox.jlis.lifecycle import (
    REVOCATION_REASONS,
    CardNotActive,
    CardNotFound,
    PersonDeceased,
    PersonNotFound,
    link,
    revoke,
)
from tsunagu.sandbox.jlis.ocsp import authorities, respond
from tsunagu.sandbox.jlis.pki import Clock, Hierarchy, load_or_create_hierarchy, new_rsa_key
from tsunagu.sandbox.jlis.profile import valid_until_fifth_birthday
from tsunagu.sandbox.jlis.schemas import Basic4Answer, CardIssued, CardView, LifeEvent, Subscription
from tsunagu.sandbox.jlis.store import (
    CardRecord,
    CertificateKind,
    CertificateRecord,
    EventRecord,
    EventType,
    PersonRecord,
    Store,
    serial_hex,
)

CrlKind = Literal["signing", "user-auth"]
DEFAULT_BASE_URL = "http://127.0.0.1:8190"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JlisSandbox:
    """J-LIS in one object: cards, life events, CRLs, OCSP, push and the basic 4 service.

    ``state_dir=None`` keeps everything in memory. ``clock`` and ``random_bytes`` make tests
    deterministic; ``hierarchy`` lets a test session share one set of CA keys; ``push_transport``
    / ``push_async_transport`` route push deliveries (an ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        state_dir: Path | None,
        clock: Clock | None = None,
        *,
        hierarchy: Hierarchy | None = None,
        base_url: str = DEFAULT_BASE_URL,
        random_bytes: Callable[[int], bytes] = os.urandom,
        card_key_factory: KeyFactory = new_rsa_key,
        push_transport: httpx.BaseTransport | None = None,
        push_async_transport: httpx.AsyncBaseTransport | None = None,
        retry_policy: push.RetryPolicy | None = None,
        card_token: Pkcs11Token | None = None,
    ) -> None:
        self.clock = clock or _utc_now
        self.state_dir = state_dir
        self.base_url = base_url.rstrip("/")
        self._random_bytes = random_bytes
        self._lock = threading.RLock()
        self.hierarchy = hierarchy or load_or_create_hierarchy(
            state_dir / "pki" if state_dir else None, self.clock()
        )
        self.store = Store(state_dir)
        # key_storage → where cards keep their keys ("pkcs11" only when given a token)
        self.card_keys: dict[str, CardKeys] = {
            "file": FileCardKeys(state_dir / "cards" if state_dir else None, card_key_factory)
        }
        if card_token is not None:
            self.card_keys["pkcs11"] = Pkcs11CardKeys(card_token)
        self.retry_policy = retry_policy or push.RetryPolicy()
        self._push_transport = push_transport
        self._push_async_transport = push_async_transport
        self.crls = CrlPublisher(
            self.store,
            {"signing": self.hierarchy.signing, "user-auth": self.hierarchy.user_auth},
            self.clock,
            state_dir,
        )

    # --- ids and serials -------------------------------------------------------------------
    def _new_id(self) -> str:
        return str(uuid.UUID(bytes=self._random_bytes(16), version=4))

    def _new_serial(self) -> int:
        while True:  # positive, at most 20 octets (RFC 5280 §4.1.2.2), never reused
            serial = int.from_bytes(self._random_bytes(16), "big") >> 1 or 1
            if serial_hex(serial) not in self.store.state.certificates:
                return serial

    # --- certificates ----------------------------------------------------------------------
    def certificate_pem(self, name: str) -> bytes:
        """A hierarchy certificate: ``root``, ``signing``, ``user-auth``, ``ocsp``, ``push``…"""
        return self.hierarchy.by_name(name).pem

    def _record(
        self, certificate: x509.Certificate, kind: CertificateKind, card: CardRecord
    ) -> CertificateRecord:
        record = CertificateRecord(
            serial=serial_hex(certificate.serial_number),
            kind=kind,
            card_id=card.card_id,
            person_id=card.person_id,
            pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
            issued_at=self.clock(),
        )
        self.store.state.certificates[record.serial] = record
        return record

    def _issue_signing(self, card: CardRecord, person: PersonRecord) -> CertificateRecord:
        info = Basic4(person.name, person.address, person.birth_date, person.sex)
        public_key = self._keys(card).public_key(card.signing_key_id)
        certificate = issue_signing_certificate(
            self.hierarchy.signing,
            public_key,
            info,
            serial=self._new_serial(),
            issued_at=self.clock(),
            base_url=self.base_url,
        )
        return self._record(certificate, "signing", card)

    def _issue_auth(self, card: CardRecord, person: PersonRecord) -> CertificateRecord:
        public_key = self._keys(card).public_key(card.auth_key_id)
        now = self.clock()
        certificate = issue_auth_certificate(
            self.hierarchy.user_auth,
            public_key,
            serial=self._new_serial(),
            valid_until=valid_until_fifth_birthday(person.birth_date, now),
            issued_at=now,
            base_url=self.base_url,
        )
        return self._record(certificate, "user-auth", card)

    # --- cards -----------------------------------------------------------------------------
    def _keys(self, card: CardRecord) -> CardKeys:
        return self.card_keys[card.key_storage]

    def create_card(
        self, name: str, address: str, birth_date: date, sex: str, key_storage: str = "file"
    ) -> CardIssued:
        """Issue a card (two fresh key pairs, a signing and a user-authentication certificate)."""
        check_card_request(
            name,
            address,
            birth_date,
            sex,
            key_storage=key_storage,
            today=self.clock().date(),
            storages=tuple(self.card_keys),
        )
        with self._lock:
            person_id, card_id = self._new_id(), self._new_id()
            card = CardRecord(
                card_id=card_id,
                person_id=person_id,
                signing_key_id=self._new_id(),
                auth_key_id=self._new_id(),
                signing_serial="",
                auth_serial="",
                issued_at=self.clock(),
                key_storage=key_storage,
            )
            self._keys(card).create(card.signing_key_id)
            self._keys(card).create(card.auth_key_id)
            person = PersonRecord(
                person_id=person_id,
                name=name,
                address=address,
                birth_date=birth_date,
                sex=sex,
                card_id=card_id,
            )
            card.signing_serial = self._issue_signing(card, person).serial
            card.auth_serial = self._issue_auth(card, person).serial
            self.store.state.persons[person_id] = person
            self.store.state.cards[card_id] = card
            self.store.save()
            return CardIssued(**self._card_view(card).model_dump(include=set(CardIssued.model_fields)))

    def _card(self, card_id: str) -> CardRecord:
        card = self.store.state.cards.get(card_id)
        if card is None:
            raise CardNotFound()
        return card

    def _card_view(self, card: CardRecord) -> CardView:
        signing = self.store.state.certificates[card.signing_serial]
        auth = self.store.state.certificates[card.auth_serial]
        return CardView(
            card_id=card.card_id,
            person_id=card.person_id,
            signing_certificate=signing.pem,
            auth_certificate=auth.pem,
            signing_serial=signing.serial,
            auth_serial=auth.serial,
            status=card.status,
            signing_revoked=signing.revoked_at is not None,
            auth_revoked=auth.revoked_at is not None,
        )

    def card(self, card_id: str) -> CardView:
        """The card's current certificates and status."""
        return self._card_view(self._card(card_id))

    def sign_with_card(
        self, card_id: str, data: bytes, certificate: Literal["signing", "auth"] = "signing"
    ) -> tuple[bytes, CertificateRecord]:
        """What the phone does with the card: PKCS#1 v1.5 SHA-256 over ``data``.

        Works whatever the certificate's status, so tests can check that the platform refuses
        signatures made under revoked certificates.
        """
        card = self._card(card_id)
        key_id, serial = (
            (card.signing_key_id, card.signing_serial)
            if certificate == "signing"
            else (card.auth_key_id, card.auth_serial)
        )
        return self._keys(card).sign(key_id, data), self.store.state.certificates[serial]

    def make_consent(self, card_id: str, operator: str) -> str:
        """The basic 4 consent JWS the holder's current signing certificate makes for ``operator``."""
        card = self._card(card_id)
        certificate = x509.load_pem_x509_certificate(
            self.store.state.certificates[card.signing_serial].pem.encode()
        )
        return make_consent(
            certificate, operator, self.clock(), lambda data: self._keys(card).sign(card.signing_key_id, data)
        )

    # --- life events -----------------------------------------------------------------------
    def _person(self, person_id: str, *, need_active_card: bool) -> tuple[PersonRecord, CardRecord]:
        person = self.store.state.persons.get(person_id)
        if person is None:
            raise PersonNotFound()
        if person.deceased_at is not None:
            raise PersonDeceased()
        card = self.store.state.cards[person.card_id]
        if need_active_card and card.status != "active":
            raise CardNotActive()
        return person, card

    def _end(
        self,
        event: EventType,
        serial: str,
        replacement: CertificateRecord | None,
        pushes: list[dict[str, object]],
    ) -> None:
        """Revoke ``serial`` for ``event``, link it to ``replacement`` and queue a push."""
        now, old = self.clock(), self.store.state.certificates[serial]
        if old.revoked_at is None:
            revoke(old, REVOCATION_REASONS[event], now)
            self.store.state.crls[old.kind].stale = True
        elif replacement is None:
            return  # already revoked (a lost card's holder dies): nothing new to tell anyone
        if replacement is not None:
            link(old, replacement, now)
        new_serial = replacement.serial if replacement else None
        pushes.append(
            push.notification_payload(
                self._new_id(),
                event,
                issued_at=now,
                old_serial=old.serial,
                new_serial=new_serial,
                issuer=old.kind,
            )
        )

    def _finish(
        self, event: EventType, card: CardRecord, old: tuple[str, str], pushes: list[dict[str, object]]
    ) -> LifeEvent:
        record = EventRecord(
            event_id=self._new_id(),
            type=event,
            person_id=card.person_id,
            card_id=card.card_id,
            at=self.clock(),
            old_serial=old[0],
            new_serial=card.signing_serial if card.signing_serial != old[0] else None,
            old_auth_serial=old[1],
            new_auth_serial=card.auth_serial if card.auth_serial != old[1] else None,
        )
        self.store.state.events.append(record)
        for payload in pushes:
            push.enqueue(self.store.state, self.hierarchy.push, payload, record.at, self._new_id)
        self.store.save()
        return LifeEvent(**record.model_dump(exclude={"person_id", "at"}))

    def _reissue_signing(self, event: EventType, person: PersonRecord, card: CardRecord) -> LifeEvent:
        pushes: list[dict[str, object]] = []
        old = (card.signing_serial, card.auth_serial)
        new = self._issue_signing(card, person)
        card.signing_serial = new.serial
        self._end(event, old[0], new, pushes)
        return self._finish(event, card, old, pushes)

    def move(self, person_id: str, address: str) -> LifeEvent:
        """転居: a new signing certificate with the new address; the old one affiliationChanged."""
        with self._lock:
            person, card = self._person(person_id, need_active_card=True)
            person.address = address
            return self._reissue_signing("move", person, card)

    def rename(self, person_id: str, name: str) -> LifeEvent:
        """氏名変更: as :meth:`move`, with a new name."""
        with self._lock:
            person, card = self._person(person_id, need_active_card=True)
            person.name = name
            return self._reissue_signing("rename", person, card)

    def renew(self, person_id: str) -> LifeEvent:
        """更新 (also after a loss): new keys and both certificates; the old ones superseded."""
        with self._lock:
            person, card = self._person(person_id, need_active_card=False)
            pushes: list[dict[str, object]] = []
            old = (card.signing_serial, card.auth_serial)
            card.signing_key_id, card.auth_key_id = self._new_id(), self._new_id()
            self._keys(card).create(card.signing_key_id)
            self._keys(card).create(card.auth_key_id)
            new_signing, new_auth = self._issue_signing(card, person), self._issue_auth(card, person)
            card.signing_serial, card.auth_serial, card.status = new_signing.serial, new_auth.serial, "active"
            self._end("renew", old[0], new_signing, pushes)
            self._end("renew", old[1], new_auth, pushes)
            return self._finish("renew", card, old, pushes)

    def _revoke_card(self, event: EventType, person_id: str) -> LifeEvent:
        with self._lock:
            person, card = self._person(person_id, need_active_card=event == "lose")
            pushes: list[dict[str, object]] = []
            old = (card.signing_serial, card.auth_serial)
            self._end(event, old[0], None, pushes)
            self._end(event, old[1], None, pushes)
            if event == "die":
                person.deceased_at, card.status = self.clock(), "deceased"
            else:
                card.status = "lost"
            return self._finish(event, card, old, pushes)

    def lose(self, person_id: str) -> LifeEvent:
        """紛失: both certificates revoked keyCompromise; :meth:`renew` issues new ones."""
        return self._revoke_card("lose", person_id)

    def die(self, person_id: str) -> LifeEvent:
        """死亡: both certificates revoked cessationOfOperation; the person accepts no more events."""
        return self._revoke_card("die", person_id)

    # --- revocation status -----------------------------------------------------------------
    def publish_crl(self, kind: CrlKind) -> CrlDocument:
        """Build the next CRL of ``kind`` now (CRL number + 1)."""
        with self._lock:
            return self.crls.publish(kind)

    def crl(self, kind: str) -> CrlDocument:
        """The current CRL of ``kind``; rebuilt if a revocation happened or it expired."""
        with self._lock:
            return self.crls.current(kind)

    def ocsp(self, request_der: bytes) -> bytes:
        """The DER OCSP response to a DER OCSP request (RFC 6960)."""
        return respond(request_der, authorities(self.hierarchy), self.store.state.certificates, self.clock())

    # --- push and basic 4 ------------------------------------------------------------------
    def subscribe(self, url: str) -> Subscription:
        """Register a push subscriber (once per URL); it gets the events that happen from now on."""
        with self._lock:
            record = push.subscribe(self.store.state, url, self._new_id, self.clock())
            self.store.save()
            return Subscription(subscription_id=record.subscription_id, url=url)

    def deliver_pending(self) -> int:
        """Try every due push delivery once, synchronously; returns how many succeeded."""
        with self._lock:
            delivered = push.deliver_pending(
                self.store.state, self.clock(), self.retry_policy, self._push_transport
            )
            self.store.save()
            return delivered

    async def adeliver_pending(self) -> int:
        """:meth:`deliver_pending` on the event loop (the app's background task uses this)."""
        delivered = await push.adeliver_pending(
            self.store.state, self.clock(), self.retry_policy, self._push_async_transport
        )
        with self._lock:
            self.store.save()
        return delivered

    def latest_basic4(self, serial: str, consent: str) -> Basic4Answer:
        """The latest basic 4 information behind an old signing certificate, given consent."""
        with self._lock:
            return latest_basic4(self.store.state, serial, consent, self.clock())

    def generate_large_crl(self, path: Path, entries: int = 1_000_000) -> LargeCrlReport:
        """A benchmark CRL of ``entries`` serials signed by the signing CA (≈ 1.5 s per million)."""
        return generate_large_crl(path, self.hierarchy.signing, entries, self.clock())
