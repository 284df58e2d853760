"""The enrollment and issuance hot path: every enrollment reads and writes these rows four times.

On PostgreSQL each read is one autocommitted statement and each write one asyncpg transaction
through the direct pool (``Database.direct``): no ORM statement is built, compiled or cached per
call. On SQLite the same reads and writes go through :class:`CaRepository` in ORM sessions. Both
paths keep the same rules: a request id is spent, a certificate stored, its event staged and the
enrollment moved on together or not at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.ca.store.models import certificate as certificate_table
from tsunagu.ca.store.models import proofing_record
from tsunagu.ca.store.repository import CaRepository, EnrollmentRecord, lock_key
from tsunagu.db import Database, as_utc
from tsunagu.events import Outbox
from tsunagu.events.registry import EventSchema
from tsunagu.obs import failpoint


class RequestIdUsed(Exception):
    """The signed request's ``jti`` was spent meanwhile (nothing was written)."""


class PublicKeyTaken(Exception):
    """A unique column of the certificate (its public key) was taken meanwhile (nothing written)."""


class EnrollmentMoved(Exception):
    """The enrollment was no longer at the expected state: a twin request won (nothing written)."""


@dataclass(frozen=True)
class IssuanceFacts:
    """What the CA checks before asking the signer (the commit re-checks what can race)."""

    public_key_known: bool
    person_state: str | None


@dataclass(frozen=True)
class Advance:
    """Move an enrollment from ``from_state`` to ``to_state``, recording the serial in ``column``."""

    enrollment_id: str
    from_state: str
    to_state: str
    column: str  # one of SERIAL_COLUMNS

    def __post_init__(self) -> None:
        if self.column not in SERIAL_COLUMNS:
            raise ValueError(f"an enrollment records a serial in {SERIAL_COLUMNS}, not {self.column!r}")


SERIAL_COLUMNS = ("signing_serial", "authentication_serial")
_ENROLLMENT_FIELDS = tuple(field.name for field in fields(EnrollmentRecord))


def _insert(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT INTO table (columns) VALUES ($1, …)`` for asyncpg."""
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 (constants)


_ENROLLMENT = f"SELECT {', '.join(_ENROLLMENT_FIELDS)} FROM enrollment WHERE id = $1"  # noqa: S608 (constants)
_NEW_ENROLLMENT = (
    "INSERT INTO enrollment (id, challenge, state, created_at, expires_at, updated_at)"
    " VALUES ($1, $2, 'started', $3, $4, $3)"
)
_FACTS = (
    "SELECT EXISTS (SELECT 1 FROM certificate WHERE spki_sha256 = $1),"
    " (SELECT state FROM person WHERE user_number = $2)"
)
_JTI_USED = "SELECT EXISTS (SELECT 1 FROM request_jti WHERE jti = $1)"
_USE_JTI = "INSERT INTO request_jti (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
# What issuance writes: every column but the revocation's (the table is the one truth).
CERTIFICATE_COLUMNS = tuple(
    column.name for column in certificate_table.c if not column.name.startswith(("revoked", "revocation"))
)
_INSERT_CERTIFICATE = _insert("certificate", CERTIFICATE_COLUMNS)
_ADVANCE = {
    column: f"UPDATE enrollment SET state = $3, updated_at = $4, {column} = $5"  # noqa: S608 (a fixed list)
    " WHERE id = $1 AND state = $2"
    for column in SERIAL_COLUMNS
}


PROOFING_COLUMNS = tuple(column.name for column in proofing_record.c)
_LOCK = "SELECT pg_advisory_xact_lock($1)"
_PERSON_FOR_CARD = "SELECT user_number FROM jpki_identity WHERE serial = $1"
# The person row if new, and the state of the one that was there (NULL when it was not: the
# outer SELECT sees the snapshot from before the CTE's insert).
_ADD_PERSON = (
    "WITH added AS (INSERT INTO person (user_number, state, created_at) VALUES ($1, 'active', $2)"
    " ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT EXISTS (SELECT 1 FROM added), (SELECT state FROM person WHERE user_number = $1)"
)
_ADD_CARD = (
    "INSERT INTO jpki_identity (serial, user_number, first_proofed_at) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING"
)
_PROOFED = (
    "UPDATE enrollment SET state = 'proofed', user_number = $2, device_id = $3, updated_at = $4"
    " WHERE id = $1 AND state = 'started'"
)
_INSERT_PROOFING = _insert("proofing_record", PROOFING_COLUMNS)


def _enrollment(values: Any) -> EnrollmentRecord:
    return EnrollmentRecord(
        *(as_utc(values[name]) if name == "expires_at" else values[name] for name in _ENROLLMENT_FIELDS)
    )


async def add_enrollment(
    db: Database, enrollment_id: str, challenge: str, now: datetime, expires_at: datetime
) -> None:
    """A new enrollment at ``started``."""
    if db.direct is not None:
        await db.direct.execute(_NEW_ENROLLMENT, enrollment_id, challenge, now, expires_at)
        return
    async with db.transaction() as session:
        await CaRepository(session).add_enrollment(
            id=enrollment_id,
            challenge=challenge,
            state="started",
            created_at=now,
            expires_at=expires_at,
            updated_at=now,
        )


async def enrollment(db: Database, enrollment_id: str) -> EnrollmentRecord | None:
    if db.direct is not None:
        row = await db.direct.fetchrow(_ENROLLMENT, enrollment_id)
        return _enrollment(row) if row is not None else None
    async with db.sessions() as session:
        return await CaRepository(session).enrollment(enrollment_id)


async def issuance_facts(db: Database, spki_sha256: str, user_number: str) -> IssuanceFacts:
    """Is the public key certified already; the person's state (None: unknown)."""
    if db.direct is not None:
        row = await db.direct.fetchrow(_FACTS, spki_sha256, user_number)
        assert row is not None  # one row always
        return IssuanceFacts(bool(row[0]), row[1])
    async with db.sessions() as session:
        repository = CaRepository(session)
        return IssuanceFacts(
            await repository.public_key_known(spki_sha256), await repository.person_state(user_number)
        )


async def jti_used(db: Database, jti: str) -> bool:
    if db.direct is not None:
        row = await db.direct.fetchrow(_JTI_USED, jti)
        return bool(row is not None and row[0])
    async with db.sessions() as session:
        return await CaRepository(session).jti_used(jti)


async def record_issued(
    db: Database,
    outbox: Outbox,
    certificate: dict[str, Any],
    event: EventSchema,
    *,
    jti: tuple[str, datetime] | None = None,
    advance: Advance | None = None,
) -> None:
    """In one transaction: spend the request id ``(jti, kept until)``, store the certificate row
    (``CERTIFICATE_COLUMNS``), stage its event and move the enrollment on. Raises
    :class:`RequestIdUsed`, :class:`PublicKeyTaken` or :class:`EnrollmentMoved` — and then
    nothing is written."""
    now = certificate["issued_at"]
    if db.direct is None:
        try:
            async with db.transaction() as session:
                repository = CaRepository(session)
                if jti is not None and not await repository.use_jti(*jti):
                    raise RequestIdUsed()
                await repository.add_certificate(**certificate)
                await outbox.add(session, event)
                if advance is not None and not await repository.advance_enrollment(
                    advance.enrollment_id,
                    advance.from_state,
                    state=advance.to_state,
                    updated_at=now,
                    **{advance.column: certificate["serial"]},
                ):
                    raise EnrollmentMoved()
                failpoint("ca.issue.before_commit")
        except IntegrityError:
            raise PublicKeyTaken() from None
        return
    async with db.driver_transaction() as connection:
        if jti is not None and await connection.execute(_USE_JTI, *jti) != "INSERT 0 1":
            raise RequestIdUsed()
        try:
            await connection.execute(_INSERT_CERTIFICATE, *(certificate[n] for n in CERTIFICATE_COLUMNS))
        except asyncpg.UniqueViolationError:
            raise PublicKeyTaken() from None
        await outbox.add_direct(connection, [event])
        if advance is not None:
            status = await connection.execute(
                _ADVANCE[advance.column],
                advance.enrollment_id,
                advance.from_state,
                advance.to_state,
                now,
                certificate["serial"],
            )
            if status != "UPDATE 1":
                raise EnrollmentMoved()
        failpoint("ca.issue.before_commit")
    outbox.wake()


class ProofWriter(Protocol):
    """The card proof's writes, in the one transaction of :func:`proof_transaction`."""

    async def lock(self, name: str) -> None:
        """Serialise proofs of ``name`` until the transaction ends (PostgreSQL)."""

    async def person_for_card(self, serial: str) -> str | None: ...

    async def add_person(self, user_number: str, now: datetime) -> tuple[bool, str | None]:
        """(created, state of the person that was there already — None when created)."""

    async def add_card(self, serial: str, user_number: str, now: datetime) -> bool:
        """Link the card to the person; False when it was linked meanwhile."""

    async def proofed(self, enrollment_id: str, user_number: str, device_id: str, now: datetime) -> bool:
        """Move the enrollment from ``started`` to ``proofed``; False when a twin did first."""

    async def add_proofing_record(self, row: dict[str, Any]) -> None: ...

    async def add_event(self, event: EventSchema) -> None: ...


class _DirectProof:
    def __init__(self, connection: Any, outbox: Outbox) -> None:
        self.connection = connection
        self.outbox = outbox

    async def lock(self, name: str) -> None:
        await self.connection.execute(_LOCK, lock_key(name))

    async def person_for_card(self, serial: str) -> str | None:
        user_number: str | None = await self.connection.fetchval(_PERSON_FOR_CARD, serial)
        return user_number

    async def add_person(self, user_number: str, now: datetime) -> tuple[bool, str | None]:
        row = await self.connection.fetchrow(_ADD_PERSON, user_number, now)
        return bool(row[0]), None if row[0] else row[1]

    async def add_card(self, serial: str, user_number: str, now: datetime) -> bool:
        status: str = await self.connection.execute(_ADD_CARD, serial, user_number, now)
        return status == "INSERT 0 1"

    async def proofed(self, enrollment_id: str, user_number: str, device_id: str, now: datetime) -> bool:
        status: str = await self.connection.execute(_PROOFED, enrollment_id, user_number, device_id, now)
        return status == "UPDATE 1"

    async def add_proofing_record(self, row: dict[str, Any]) -> None:
        await self.connection.execute(_INSERT_PROOFING, *(row[name] for name in PROOFING_COLUMNS))

    async def add_event(self, event: EventSchema) -> None:
        await self.outbox.add_direct(self.connection, [event])


class _OrmProof:
    def __init__(self, session: AsyncSession, outbox: Outbox) -> None:
        self.session = session
        self.repository = CaRepository(session)
        self.outbox = outbox

    async def lock(self, name: str) -> None:
        await self.repository.lock(name)

    async def person_for_card(self, serial: str) -> str | None:
        return await self.repository.person_for_jpki(serial)

    async def add_person(self, user_number: str, now: datetime) -> tuple[bool, str | None]:
        state = await self.repository.person_state(user_number)
        if state is not None:
            return False, state
        return await self.repository.add_person_if_new(user_number, now), None

    async def add_card(self, serial: str, user_number: str, now: datetime) -> bool:
        return await self.repository.add_jpki_identity(serial, user_number, now)

    async def proofed(self, enrollment_id: str, user_number: str, device_id: str, now: datetime) -> bool:
        return await self.repository.advance_enrollment(
            enrollment_id,
            "started",
            state="proofed",
            user_number=user_number,
            device_id=device_id,
            updated_at=now,
        )

    async def add_proofing_record(self, row: dict[str, Any]) -> None:
        await self.repository.add_proofing_record(**row)

    async def add_event(self, event: EventSchema) -> None:
        await self.outbox.add(self.session, event)


@asynccontextmanager
async def proof_transaction(db: Database, outbox: Outbox) -> AsyncIterator[ProofWriter]:
    """One transaction for a card proof: committed when the block ends, rolled back (nothing
    written) if it raises. asyncpg through the direct pool on PostgreSQL, the ORM on SQLite."""
    if db.direct is None:
        async with db.transaction() as session:
            yield _OrmProof(session, outbox)
        return
    async with db.driver_transaction() as connection:
        yield _DirectProof(connection, outbox)
    outbox.wake()
