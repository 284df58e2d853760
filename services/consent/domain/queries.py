"""What consent answers: effective consent (idp, broker), the wallet's pending requests, grants
and history, and the export of one decision with its evidence.

Effective consent for (person, recipient, purpose, item, time) is **allow** only when some
``decide`` in force at that time allows the item and none in force refuses it (deny wins); with
no decision it is **deny**. In force: ``effective_from ≤ t < valid_until`` and not superseded by a
decision recorded at or before ``t`` (a withdrawal counts from the moment it is recorded).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from tsunagu.consent.domain import jws_rfc7515, wallet_queries
from tsunagu.consent.domain.catalog import CATALOG
from tsunagu.consent.domain.context import ConsentContext, rfc3339
from tsunagu.consent.domain.effective_cache import ItemRow, in_force
from tsunagu.consent.domain.errors import DecisionNotFound, InvalidQuery, RequestReplayed
from tsunagu.consent.domain.record_iso27560 import event_type, record
from tsunagu.consent.domain.requests import view as request_view
from tsunagu.consent.domain.statement import DECISION_TYP, Statement, read_statement
from tsunagu.consent.store import repository as store

MAX_BATCH = 500
EXPORT_FORMAT = "tsunagu-consent-export/1"


def combine(items: Iterable[str], values: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Deny wins: allow only with an allow in force and no deny in force."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for item, value in values:
        (allowed if value == "allow" else denied).add(item)
    return {item: "allow" if item in allowed and item not in denied else "deny" for item in items}


def stored_statement(row: dict[str, Any]) -> Statement:
    """The statement of a stored decision (it passed every check when it was recorded)."""
    return read_statement(jws_rfc7515.parse(row["jws"], DECISION_TYP).payload)


class ConsentQueries:
    def __init__(self, context: ConsentContext) -> None:
        self.context = context

    async def effective(
        self, user_number: str, recipient: str, purpose: str, items: list[str], at: datetime | None
    ) -> dict[str, str]:
        if not items or len(items) > MAX_BATCH:
            raise InvalidQuery(f"items: 1 to {MAX_BATCH}")
        if at is not None and at.tzinfo is None:
            raise InvalidQuery("at needs a time zone offset")
        moment = at or self.context.clock()
        wanted = sorted({item for item in items if item in CATALOG})
        values: list[tuple[str, str]] = []
        if wanted:
            rows = await self._rows(user_number)
            values = in_force(rows, recipient, purpose, wanted, moment)
        return combine(items, values)

    async def _rows(self, user_number: str) -> list[ItemRow]:
        return (await self._people_rows([user_number]))[user_number]

    async def _people_rows(self, user_numbers: Iterable[str]) -> dict[str, list[ItemRow]]:
        """Each person's decision items: from the cache, the rest in one query (then kept)."""
        cache = self.context.effective
        found: dict[str, list[ItemRow]] = {}
        tokens = {}
        for user in dict.fromkeys(user_numbers):
            rows, tokens[user] = cache.lookup(user)
            if rows is not None:
                found[user] = rows
        missing = [user for user in tokens if user not in found]
        if missing:
            loaded: dict[str, list[ItemRow]] = {user: [] for user in missing}
            async with self.context.db.sessions() as session:
                for row in await store.people_item_rows(session, missing):
                    user = row.pop("user_number")
                    loaded[user].append(ItemRow(**row))
            for user, rows in loaded.items():
                cache.keep(user, tokens[user], rows)
            found.update(loaded)
        return found

    async def effective_many(self, checks: list[tuple[str, str, str, str]], at: datetime | None) -> list[str]:
        """Many (user, recipient, purpose, item) checks at one time, answered in order (the
        broker's bulk view); at most one database round trip (for the people not in memory)."""
        if not checks or len(checks) > MAX_BATCH:
            raise InvalidQuery(f"checks: 1 to {MAX_BATCH}")
        if at is not None and at.tzinfo is None:
            raise InvalidQuery("at needs a time zone offset")
        moment = at or self.context.clock()
        keys = sorted({check for check in checks if check[3] in CATALOG})
        values: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        people = await self._people_rows(user for user, _, _, _ in keys) if keys else {}
        for user, recipient, purpose, item in keys:
            values.setdefault((user, recipient, purpose), []).extend(
                in_force(people[user], recipient, purpose, [item], moment)
            )
        return [
            combine([item], values.get((user, recipient, purpose), []))[item]
            for user, recipient, purpose, item in checks
        ]

    async def verified(self, token: str, op: str) -> wallet_queries.VerifiedQuery:
        """A wallet-signed query for ``op``: signature, freshness, the CA's holder of the
        authentication certificate, and its ``jti`` used up (a replay is refused)."""
        context = self.context
        now = context.clock()
        max_age = context.policy.max_signature_age_s
        verified = await wallet_queries.verify(token, op=op, ca=context.ca, now=now, max_age_s=max_age)
        expires = now + timedelta(seconds=max_age + context.policy.skew_s)
        async with context.db.transaction() as session:
            if not await store.first_use(session, verified.certificate_serial, verified.jti, expires):
                raise RequestReplayed()
        return verified

    async def pending_for_wallet(self, token: str) -> list[dict[str, Any]]:
        """The signer's pending requests (see :meth:`pending_of`), for a wallet-signed query."""
        verified = await self.verified(token, "requests")
        return await self.pending_of(verified.user_number)

    async def pending_of(self, user_number: str) -> list[dict[str, Any]]:
        """A person's pending requests, each with what the wallet needs to answer it: the head of
        the chain for that recipient and the decisions in force it may supersede. The caller has
        authenticated the person (a wallet-signed query, a dashboard session)."""
        now = self.context.clock()
        async with self.context.db.sessions() as session:
            pending = await store.pending_requests(session, user_number, now)
            in_force = await store.in_force(session, user_number, now)
            answers = []
            for row in pending:
                shown = request_view(row)
                shown["previous"] = await store.latest_hash(session, user_number, row["recipient_id"])
                shown["in_force"] = [
                    d["id"]
                    for d in in_force
                    if d["recipient_id"] == row["recipient_id"] and d["purpose_code"] == row["purpose_code"]
                ]
                answers.append(shown)
        return answers

    async def grants(self, token: str) -> dict[str, Any]:
        """What each recipient may receive now (see :meth:`grants_of`), for a wallet-signed query."""
        verified = await self.verified(token, "grants")
        return await self.grants_of(verified.user_number)

    async def grants_of(self, user_number: str) -> dict[str, Any]:
        """What each recipient may receive from this person now, grouped by recipient (deny wins
        per item), with the purposes (code, ja, en) of the decisions in force."""
        now = self.context.clock()
        async with self.context.db.sessions() as session:
            rows = await store.in_force(session, user_number, now)
            items = await store.items_of(session, [row["id"] for row in rows])
            names = await store.recipients(session, [row["recipient_id"] for row in rows])
        grouped: dict[str, Any] = {}
        for row in rows:
            entry = grouped.setdefault(
                row["recipient_id"],
                {
                    "recipient": row["recipient_id"],
                    "name_ja": names.get(row["recipient_id"], {}).get("name_ja"),
                    "name_en": names.get(row["recipient_id"], {}).get("name_en"),
                    "purposes": {},
                    "decisions": [],
                },
            )
            decided = items.get(row["id"], {})
            purpose_text = stored_statement(row).purpose
            entry["decisions"].append(
                {
                    "decision_id": row["id"],
                    "purpose": row["purpose_code"],
                    "purpose_ja": purpose_text.ja,
                    "purpose_en": purpose_text.en,
                    "items": decided,
                    "valid_until": rfc3339(row["valid_until"]),
                    "recorded_at": rfc3339(row["recorded_at"]),
                }
            )
            purpose = entry["purposes"].setdefault(row["purpose_code"], [])
            purpose.extend(decided.items())
        for entry in grouped.values():
            entry["purposes"] = {
                code: combine(sorted({item for item, _ in values}), values)
                for code, values in entry["purposes"].items()
            }
        return {"user_number": user_number, "at": rfc3339(now), "recipients": list(grouped.values())}

    async def history(self, token: str) -> dict[str, Any]:
        """Every decision of the signer (see :meth:`history_of`), for a wallet-signed query."""
        verified = await self.verified(token, "history")
        return await self.history_of(verified.user_number)

    async def history_of(self, user_number: str) -> dict[str, Any]:
        """Every decision of this person, oldest first: its ISO/IEC TS 27560 event type, the
        statement, the receipt and what superseded it."""
        async with self.context.db.sessions() as session:
            rows = await store.history(session, user_number)
        superseded = {row["supersedes"]: row["id"] for row in rows if row["supersedes"]}
        entries = []
        for row in rows:
            statement = stored_statement(row)
            entries.append(
                {
                    "decision_id": row["id"],
                    "sequence": row["sequence"],
                    "event": event_type(statement),
                    "recipient": row["recipient_id"],
                    "purpose": statement.purpose.model_dump(),
                    "items": dict(statement.items),
                    "signed_at": statement.signed_at,
                    "recorded_at": rfc3339(row["recorded_at"]),
                    "valid_until": rfc3339(row["valid_until"]),
                    "supersedes": row["supersedes"],
                    "superseded_by": superseded.get(row["id"]),
                    "decision_sha256": row["decision_sha256"],
                    "statement_jws": row["jws"],
                    "receipt": row["receipt"],
                }
            )
        return {"user_number": user_number, "decisions": entries}

    async def export(self, decision_id: str, *, user_number: str | None = None) -> dict[str, Any]:
        """One decision with its evidence, verifiable offline (``export_verify.verify_export``)."""
        async with self.context.db.sessions() as session:
            row = await store.decision_row(session, decision_id)
            if row is None or (user_number is not None and row["user_number"] != user_number):
                raise DecisionNotFound()
            names = await store.recipients(session, [row["recipient_id"]])
            later = await store.superseded_by(session, decision_id)
        statement = stored_statement(row)
        return {
            "format": EXPORT_FORMAT,
            "decision_id": row["id"],
            "statement_jws": row["jws"],
            "receipt_jws": row["receipt"],
            "receipt_key": await self.context.receipts.public_key(row["receipt_kid"]),
            "ca_evidence": row["ca_evidence"],
            "superseded_by": later,
            "record": record(row, statement, names.get(row["recipient_id"])),
        }

    async def export_for_wallet(self, token: str) -> dict[str, Any]:
        verified = await self.verified(token, "export")
        decision_id = verified.claims.get("decision_id")
        if not isinstance(decision_id, str):
            raise InvalidQuery("decision_id is required")
        return await self.export(decision_id, user_number=verified.user_number)
