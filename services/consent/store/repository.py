"""Reads and writes of consent's tables. Decisions and their items are only ever inserted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.consent.store import changes
from tsunagu.consent.store.models import consent_request, decision, decision_item, recipient, seen_jti
from tsunagu.db import Database, as_utc
from tsunagu.events import Outbox
from tsunagu.events.registry import EventSchema

GENESIS = "genesis"
_TIMES = (
    "valid_from",
    "valid_until",
    "created_at",
    "answer_by",
    "signed_at",
    "recorded_at",
    "effective_from",
)


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in _TIMES:
        if key in row:
            row[key] = as_utc(row[key])
    return row


# -- recipients ----------------------------------------------------------------------------------
async def recipient_row(session: AsyncSession, recipient_id: str) -> dict[str, Any] | None:
    found = (await session.execute(select(recipient).where(recipient.c.id == recipient_id))).first()
    return _row(found._mapping) if found else None


async def save_recipient(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert or rename; True when it was new."""
    if await recipient_row(session, values["id"]) is None:
        await session.execute(insert(recipient).values(**values))
        return True
    await session.execute(
        update(recipient)
        .where(recipient.c.id == values["id"])
        .values(name_ja=values["name_ja"], name_en=values["name_en"])
    )
    return False


async def recipients(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = await session.execute(select(recipient).where(recipient.c.id.in_(sorted(set(ids)))))
    return {row.id: _row(row._mapping) for row in rows}


# -- requests ------------------------------------------------------------------------------------
async def add_request(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(consent_request).values(**values))


async def request_row(session: AsyncSession, request_id: str) -> dict[str, Any] | None:
    found = (await session.execute(select(consent_request).where(consent_request.c.id == request_id))).first()
    return _row(found._mapping) if found else None


async def pending_requests(session: AsyncSession, user_number: str, now: datetime) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(consent_request)
        .where(
            consent_request.c.user_number == user_number,
            consent_request.c.state == "pending",
            consent_request.c.answer_by > now,
        )
        .order_by(consent_request.c.created_at)
    )
    return [_row(row._mapping) for row in rows]


async def mark_answered(session: AsyncSession, request_id: str, decision_id: str) -> bool:
    """pending → answered, only if still pending (a concurrent answer loses)."""
    result = await session.execute(
        update(consent_request)
        .where(consent_request.c.id == request_id, consent_request.c.state == "pending")
        .values(state="answered", decision_id=decision_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# -- decisions -----------------------------------------------------------------------------------
class DecisionConflict(Exception):
    """A unique rule of the decision (sequence, nonce, chain head, hash) was taken by a concurrent
    decision of the same person: the transaction is void; read again to know which."""


@dataclass(frozen=True)
class DecisionFacts:
    """What a new decision of this person must agree with, read in one statement."""

    nonce_used: bool
    recipient_known: bool
    head: str | None  # SHA-256 of the latest decision for this recipient (the chain's head)
    next_sequence: int
    request: dict[str, Any] | None  # the request it answers, if it names one that exists


_REQUEST_COLUMNS = tuple(consent_request.c.keys())
# PostgreSQL: the facts and the request in one autocommitted statement on the direct pool.
_FACTS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM decision WHERE user_number = $1 AND nonce = $3) AS nonce_used,"  # noqa: S608 (the table's own column names, no input)
    " EXISTS (SELECT 1 FROM recipient WHERE id = $2) AS recipient_known,"
    " (SELECT decision_sha256 FROM decision WHERE user_number = $1 AND recipient_id = $2"
    " ORDER BY sequence DESC LIMIT 1) AS head,"
    " (SELECT max(sequence) FROM decision WHERE user_number = $1) AS last,"
    f" {', '.join('r.' + name for name in _REQUEST_COLUMNS)}"
    " FROM (SELECT 1) AS one LEFT JOIN consent_request AS r ON r.id = $4"
)


async def decision_facts(
    db: Database, user_number: str, recipient_id: str, nonce: str, request_id: str | None = None
) -> DecisionFacts:
    """Nonce, recipient, chain head, next sequence and the request: one statement straight
    through the direct pool on PostgreSQL (no ORM: this is every decision's read); a read session
    on SQLite."""
    if db.direct is not None:
        found = await db.direct.fetchrow(_FACTS_SQL, user_number, recipient_id, nonce, request_id)
        assert found is not None  # one row always (FROM a one-row table)
        request = _row({name: found[name] for name in _REQUEST_COLUMNS}) if found["id"] is not None else None
        return _facts(found, request)
    mine = decision.c.user_number == user_number
    async with db.sessions() as session:
        row = (
            await session.execute(
                select(
                    exists().where(mine, decision.c.nonce == nonce).label("nonce_used"),
                    exists().where(recipient.c.id == recipient_id).label("recipient_known"),
                    select(decision.c.decision_sha256)
                    .where(mine, decision.c.recipient_id == recipient_id)
                    .order_by(decision.c.sequence.desc())
                    .limit(1)
                    .scalar_subquery()
                    .label("head"),
                    select(func.max(decision.c.sequence)).where(mine).scalar_subquery().label("last"),
                )
            )
        ).one()
        request = await request_row(session, request_id) if request_id is not None else None
    return _facts(row._mapping, request)


def _facts(found: Any, request: dict[str, Any] | None) -> DecisionFacts:
    return DecisionFacts(
        nonce_used=bool(found["nonce_used"]),
        recipient_known=bool(found["recipient_known"]),
        head=found["head"],
        next_sequence=int(found["last"] or 0) + 1,
        request=request,
    )


async def latest_hash(session: AsyncSession, user_number: str, recipient_id: str) -> str | None:
    """SHA-256 of the citizen's latest decision for this recipient (the chain's head)."""
    found = await session.execute(
        select(decision.c.decision_sha256)
        .where(decision.c.user_number == user_number, decision.c.recipient_id == recipient_id)
        .order_by(decision.c.sequence.desc())
        .limit(1)
    )
    return found.scalar_one_or_none()


async def decision_row(session: AsyncSession, decision_id: str) -> dict[str, Any] | None:
    found = (await session.execute(select(decision).where(decision.c.id == decision_id))).first()
    return _row(found._mapping) if found else None


async def superseded_by(session: AsyncSession, decision_id: str) -> str | None:
    found = await session.execute(select(decision.c.id).where(decision.c.supersedes == decision_id).limit(1))
    return found.scalar_one_or_none()


class RequestAnswered(Exception):
    """The request was answered (or expired) by the time the decision was written: nothing was."""


_DECISION_COLUMNS = tuple(decision.c.keys())
# The item rows travel as one array per column; each column with the type its array has.
_ITEM_TYPES = {
    "decision_id": "text",
    "item": "text",
    "value": "text",
    "user_number": "text",
    "recipient_id": "text",
    "purpose_code": "text",
    "effective_from": "timestamptz",
    "valid_until": "timestamptz",
}
_ITEM_COLUMNS = tuple(_ITEM_TYPES)
_INSERT_DECISION = (
    f"INSERT INTO decision ({', '.join(_DECISION_COLUMNS)})"  # noqa: S608 (the table's own column names, no input)
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_DECISION_COLUMNS) + 1))})"
)
_INSERT_ITEMS = (
    f"INSERT INTO decision_item ({', '.join(_ITEM_COLUMNS)})"  # noqa: S608 (the table's own column names, no input)
    " SELECT * FROM unnest("
    + ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_ITEM_TYPES.values(), start=1))
    + ")"
)
_ANSWER = (
    "UPDATE consent_request SET state = 'answered', decision_id = $2 WHERE id = $1 AND state = 'pending'"
)


async def record_decision(
    db: Database,
    outbox: Outbox,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    event: EventSchema,
) -> None:
    """The decision, its item rows, its request marked answered and its event: one transaction
    (asyncpg straight through the direct pool on PostgreSQL — this is every decision's write —,
    the ORM on SQLite). Every listener hears of the person's bucket on commit. Raises
    :class:`DecisionConflict` when a unique rule was taken meanwhile, :class:`RequestAnswered`
    when the request is no longer pending; nothing is written then."""
    request_id = values["request_id"]
    if db.direct is None:
        async with db.transaction() as session:
            await add_decision(session, values, items)
            if request_id is not None and not await mark_answered(session, request_id, values["id"]):
                raise RequestAnswered()
            await outbox.add(session, event)
        return
    async with db.driver_transaction() as connection:
        try:
            await connection.execute(_INSERT_DECISION, *(values[name] for name in _DECISION_COLUMNS))
        except asyncpg.UniqueViolationError:
            raise DecisionConflict() from None
        if items:
            await connection.execute(
                _INSERT_ITEMS, *([item[name] for item in items] for name in _ITEM_COLUMNS)
            )
        await changes.announce_direct(connection, values["user_number"])
        if (
            request_id is not None
            and await connection.execute(_ANSWER, request_id, values["id"]) != "UPDATE 1"
        ):
            raise RequestAnswered()
        await outbox.add_direct(connection, [event])
    outbox.wake()


async def add_decision(session: AsyncSession, values: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Insert the decision and its item rows, first in the transaction (nothing else of it is
    written before them). Raises :class:`DecisionConflict` when a unique rule was taken meanwhile;
    the caller's transaction is then void and rolls back."""
    try:
        await session.execute(insert(decision), values)  # a fixed statement: compiled once
    except IntegrityError:
        raise DecisionConflict() from None
    if items:
        await session.execute(insert(decision_item), items)
    await changes.announce(session, values["user_number"])  # heard by every process on commit


async def people_item_rows(session: AsyncSession, user_numbers: Sequence[str]) -> list[dict[str, Any]]:
    """Every decision item of these people, with the time its decision was superseded (if it
    was): ``domain/effective_cache.in_force`` decides from these what is in force when."""
    later = decision.alias("later")
    superseded = (
        select(func.min(later.c.recorded_at))
        .where(later.c.supersedes == decision_item.c.decision_id)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            decision_item.c.user_number,
            decision_item.c.recipient_id,
            decision_item.c.purpose_code,
            decision_item.c.item,
            decision_item.c.value,
            decision_item.c.effective_from,
            decision_item.c.valid_until,
            superseded.label("superseded_at"),
        ).where(decision_item.c.user_number.in_(list(user_numbers)))
    )
    return [
        {
            "user_number": row.user_number,
            "recipient": row.recipient_id,
            "purpose": row.purpose_code,
            "item": row.item,
            "value": row.value,
            "effective_from": as_utc(row.effective_from),
            "valid_until": as_utc(row.valid_until),
            "superseded_at": as_utc(row.superseded_at),
        }
        for row in rows
    ]


async def in_force(session: AsyncSession, user_number: str, at: datetime) -> list[dict[str, Any]]:
    """The citizen's ``decide`` decisions counting at ``at`` (not superseded, not expired)."""
    later = decision.alias("later")
    rows = await session.execute(
        select(decision)
        .where(
            decision.c.user_number == user_number,
            decision.c.action == "decide",
            decision.c.valid_until > at,
            ~exists().where(later.c.supersedes == decision.c.id, later.c.recorded_at <= at),
        )
        .order_by(decision.c.sequence)
    )
    return [_row(row._mapping) for row in rows]


async def history(session: AsyncSession, user_number: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(decision).where(decision.c.user_number == user_number).order_by(decision.c.sequence)
    )
    return [_row(row._mapping) for row in rows]


async def items_of(session: AsyncSession, decision_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    if not decision_ids:
        return {}
    rows = await session.execute(
        select(decision_item.c.decision_id, decision_item.c.item, decision_item.c.value).where(
            decision_item.c.decision_id.in_(list(decision_ids))
        )
    )
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        found.setdefault(row.decision_id, {})[row.item] = row.value
    return found


# -- single-use wallet queries -------------------------------------------------------------------
async def first_use(session: AsyncSession, issuer: str, jti: str, expires_at: datetime) -> bool:
    try:
        async with session.begin_nested():
            await session.execute(
                insert(seen_jti).values(issuer=issuer[:40], jti=jti[:128], expires_at=expires_at)
            )
    except IntegrityError:
        return False
    return True


async def forget_expired_jti(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(seen_jti).where(seen_jti.c.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
