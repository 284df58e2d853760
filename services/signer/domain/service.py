"""What the signer does: sign with the right key for the right caller, and run key lifecycles.

Every state change and its event commit together (outbox); every signature is accounted for by a
``SignaturesCreatedV1`` event committed before the signature leaves the service.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tsunagu.db import Database
from tsunagu.events import GroupCommit, Outbox
from tsunagu.events.schemas.signer import (
    KeyActivatedV1,
    KeyCreatedV1,
    KeyDestroyedV1,
    KeyRetiredV1,
    SignaturesCreatedV1,
)
from tsunagu.signer.domain import keys as rules
from tsunagu.signer.domain.algorithms import DIGEST_SIZE, SPECS, Algorithm, SignatureFormat, sha256
from tsunagu.signer.domain.backend import KeyBackend, Payload
from tsunagu.signer.domain.errors import (
    BatchTooLarge,
    DigestNotAllowed,
    InvalidDigest,
    ItemTooLarge,
    NoActiveKey,
    UnknownKey,
)
from tsunagu.signer.domain.keys import KeyState, Purpose, SigningKey
from tsunagu.signer.store.repository import KeyRepository


def _now() -> datetime:
    return datetime.now(UTC)


def _to_der(raw: bytes) -> bytes:
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


class SignerService:
    def __init__(
        self,
        db: Database,
        backend: KeyBackend,
        outbox: Outbox,
        *,
        grace: timedelta,
        max_items: int,
        max_payload_bytes: int,
        key_cache_s: float = 1.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.db = db
        self.backend = backend
        self.outbox = outbox
        self.audit = GroupCommit(db, outbox)
        self.grace = grace
        self.max_items = max_items
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock
        self.key_cache_s = key_cache_s
        self._key_cache: dict[str, tuple[SigningKey, float]] = {}

    # -- signing -------------------------------------------------------------------------------

    def _check_payloads(self, algorithm: Algorithm, payloads: Sequence[Payload]) -> None:
        if len(payloads) > self.max_items:
            raise BatchTooLarge(f"at most {self.max_items} items per call")
        for index, payload in enumerate(payloads):
            if len(payload.value) > self.max_payload_bytes:
                raise ItemTooLarge(f"item {index} is over {self.max_payload_bytes} bytes")
            if payload.prehashed:
                if not SPECS[algorithm].accepts_digest:
                    raise DigestNotAllowed(f"{algorithm.value} signs the data itself (item {index})")
                if len(payload.value) != DIGEST_SIZE:
                    raise InvalidDigest(f"item {index} is {len(payload.value)} bytes")

    async def sign(
        self,
        caller: str,
        payloads: Sequence[Payload],
        *,
        key_id: str | None = None,
        purpose: Purpose | None = None,
        algorithm: Algorithm | None = None,
        signature_format: SignatureFormat = SignatureFormat.RAW,
    ) -> tuple[SigningKey, list[bytes]]:
        """Sign ``payloads`` with the key ``key_id`` or the active key of ``purpose``.

        The HSM signs before the audit transaction opens, so a connection is held only for the
        INSERT and COMMIT; the signature is returned only once its audit event has committed —
        in a transaction it may share with concurrent calls (group commit).
        """
        key = await self._signing_key(key_id, purpose, algorithm)
        rules.ensure_can_sign(
            key,
            caller,
            algorithm,
            by_key_id=key_id is not None,
            payloads=[None if p.prehashed else p.value for p in payloads],
        )
        self._check_payloads(key.algorithm, payloads)
        signatures = await self.backend.sign(key.hsm_label, key.algorithm, payloads)
        # Concurrent calls share one audit transaction (group commit); each waits for its own.
        await self.audit.add(
            SignaturesCreatedV1(
                key_id=key.kid,
                purpose=key.purpose.value,
                algorithm=key.algorithm.value,
                caller=caller,
                signed_at=self.clock(),
                payload_sha256=[(p.value if p.prehashed else sha256(p.value)).hex() for p in payloads],
            )
        )
        if key.algorithm is Algorithm.ES256 and signature_format is SignatureFormat.DER:
            signatures = [_to_der(signature) for signature in signatures]
        return key, signatures

    async def _signing_key(
        self, key_id: str | None, purpose: Purpose | None, algorithm: Algorithm | None = None
    ) -> SigningKey:
        """The key to sign with, from a registry cache at most ``key_cache_s`` old: ``key_id``, or
        the active key of ``purpose`` (of ``algorithm`` when named — one per algorithm for ID
        tokens).

        Lifecycle changes made through this process clear the cache at once; another replica's
        change is seen within ``key_cache_s`` (a retired key may sign that long, audited as usual).
        """
        wanted = purpose or Purpose.LOG
        selector = (
            f"kid:{key_id}" if key_id else f"purpose:{wanted.value}:{algorithm.value if algorithm else ''}"
        )
        cached = self._key_cache.get(selector)
        if cached is not None and time.monotonic() - cached[1] < self.key_cache_s:
            return cached[0]
        async with self.db.sessions() as session:
            repository = KeyRepository(session)
            if key_id:
                record = await repository.get(key_id)
                key = SigningKey.from_record(record) if record else None
            else:
                active = [SigningKey.from_record(r) for r in await repository.active_for(wanted.value)]
                key = rules.preferred(active, algorithm)
        if key is None:
            if key_id:
                raise UnknownKey("no key with that id")
            named = f"{algorithm.value} " if algorithm else ""
            raise NoActiveKey(f"no active {named}{wanted} key")
        if len(self._key_cache) > 1024:
            self._key_cache.clear()
        self._key_cache[selector] = (key, time.monotonic())
        return key

    # -- key lifecycle ---------------------------------------------------------------------------

    async def create_key(
        self,
        actor: str,
        purpose: Purpose,
        algorithm: Algorithm,
        key_size: int | None,
        allowed_callers: Sequence[str] | None = None,
    ) -> SigningKey:
        """Generate a key inside the HSM and register it as ``next`` (published, not yet signing)."""
        size = rules.check_key_spec(purpose, algorithm, key_size)
        callers = rules.check_callers(tuple(allowed_callers or rules.DEFAULT_CALLERS[purpose]))
        label = uuid.uuid4().hex
        public_key = await self.backend.generate(label, algorithm, size)
        key = SigningKey(
            kid=rules.key_id_for(public_key),
            purpose=purpose,
            algorithm=algorithm,
            key_size=size,
            state=KeyState.NEXT,
            hsm_label=label,
            public_key_der=public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            allowed_callers=callers,
            created_at=self.clock(),
        )
        try:
            async with self.db.transaction() as session:
                await KeyRepository(session).add(key.to_record())
                await self.outbox.add(
                    session,
                    KeyCreatedV1(
                        key_id=key.kid,
                        purpose=purpose.value,
                        algorithm=algorithm.value,
                        state=key.state.value,
                        actor=actor,
                        at=key.created_at,
                        key_size=size,
                        public_key_pem=key.public_key_pem(),
                        allowed_callers=list(callers),
                    ),
                )
        except BaseException:
            await self.backend.destroy(label)  # not registered: it must not linger in the HSM
            raise
        return key

    async def activate(self, actor: str, kid: str) -> SigningKey:
        """``next`` → ``active``; the previous active key it replaces (of the purpose — of the
        purpose and algorithm for ID-token keys) is retired in the same step."""
        now = self.clock()
        async with self.db.transaction() as session:
            repository = KeyRepository(session)
            key = rules.activated(await self._existing(repository, kid), now)
            current = [
                SigningKey.from_record(r)
                for r in await repository.active_for(key.purpose.value, for_update=True)
            ]
            for replaced in rules.replaced_by(key, current):
                previous = rules.retired(replaced, now)
                await repository.save_state(previous.to_record())
                await self.outbox.add(session, self._lifecycle(KeyRetiredV1, previous, actor, now))
            await repository.save_state(key.to_record())
            await self.outbox.add(session, self._lifecycle(KeyActivatedV1, key, actor, now))
        self._key_cache.clear()  # and again after commit: nothing cached the old state meanwhile
        return key

    async def retire(self, actor: str, kid: str) -> SigningKey:
        now = self.clock()
        async with self.db.transaction() as session:
            repository = KeyRepository(session)
            key = rules.retired(await self._existing(repository, kid), now)
            await repository.save_state(key.to_record())
            await self.outbox.add(session, self._lifecycle(KeyRetiredV1, key, actor, now))
        self._key_cache.clear()  # and again after commit: nothing cached the old state meanwhile
        return key

    async def destroy(self, actor: str, kid: str) -> SigningKey:
        """Delete the key from the HSM once its grace period is over; the record and the public
        key stay, so old signatures can still be checked by auditors."""
        now = self.clock()
        async with self.db.transaction() as session:
            repository = KeyRepository(session)
            key = rules.destroyed(await self._existing(repository, kid), now, self.grace)
            await repository.save_state(key.to_record())
            await self.outbox.add(session, self._lifecycle(KeyDestroyedV1, key, actor, now))
            # Inside the transaction: if the HSM refuses, the registry does not claim it is gone.
            await self.backend.destroy(key.hsm_label)
        self._key_cache.clear()  # and again after commit: nothing cached the old state meanwhile
        return key

    async def keys(
        self, *, purpose: Purpose | None = None, states: tuple[KeyState, ...] = ()
    ) -> list[SigningKey]:
        async with self.db.sessions() as session:
            records = await KeyRepository(session).list(
                purpose=purpose.value if purpose else None, states=tuple(s.value for s in states)
            )
        return [SigningKey.from_record(record) for record in records]

    async def key(self, kid: str) -> SigningKey:
        async with self.db.sessions() as session:
            return await self._existing(KeyRepository(session), kid, for_update=False)

    async def _existing(self, repository: KeyRepository, kid: str, *, for_update: bool = True) -> SigningKey:
        if for_update:
            self._key_cache.clear()  # a lifecycle change is coming: never sign with a stale view
        record = await repository.get(kid, for_update=for_update)
        if record is None:
            raise UnknownKey("no key with that id")
        return SigningKey.from_record(record)

    @staticmethod
    def _lifecycle(
        event: type[KeyActivatedV1 | KeyRetiredV1 | KeyDestroyedV1], key: SigningKey, actor: str, at: datetime
    ) -> KeyActivatedV1 | KeyRetiredV1 | KeyDestroyedV1:
        return event(
            key_id=key.kid,
            purpose=key.purpose.value,
            algorithm=key.algorithm.value,
            state=key.state.value,
            actor=actor,
            at=at,
        )
