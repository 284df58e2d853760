"""Recording a citizen's signed decision: every check first, then one transaction that stores the
statement and its evidence unchanged, the receipt and the event — or nothing at all.

Order of checks (each failure is a specific 4xx and nothing is written):
1. the JWS: shape, ``typ``, ``alg``, ``x5c`` (``MalformedJws``); the signature with x5c[0]'s key;
2. the payload: JSON object, RFC 8785 canonical form, statement schema (``MalformedStatement``);
3. freshness: ``signed_at`` within ``max_signature_age_s`` (``StaleSignature``);
4. catalog items (``UnknownItem``);
5. the CA: the certificate is ours, a *signing* certificate, good at ``signed_at`` and not revoked
   since; x5c is the CA's chain — the person is the CA's ``user_number``, never the statement's;
6. against the records (read without a transaction, in one statement on PostgreSQL): recipient
   known; the request is this person's, pending, and the statement matches it item for item (no
   item it did not ask, none left undecided) and names its notice; ``supersedes`` is this person's
   in-force decision of the same recipient and purpose; ``previous`` is the head of this person's
   chain for this recipient. (The nonce — new for this person — is checked first, so a replayed
   statement is answered ``nonce-replayed``.)

Then the receipt is countersigned, and one transaction writes the decision, its items, the
answered request and the event. What a concurrent decision could change between the reads and the
writes is enforced by the writes themselves: unique (person, nonce), (person, sequence) and
(person, recipient, previous hash), and the request's update only while it is pending.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tsunagu.consent.domain import certificates, jws_rfc7515
from tsunagu.consent.domain.catalog import CATALOG
from tsunagu.consent.domain.context import ConsentContext, rfc3339
from tsunagu.consent.domain.errors import (
    AlreadySuperseded,
    ConsentRequestNotFound,
    DecisionNotFound,
    InvalidWithdrawal,
    ItemsMissing,
    ItemsNotRequested,
    MalformedStatement,
    NonceReplayed,
    NotYourDecision,
    NotYourRequest,
    PreviousMismatch,
    RequestNotPending,
    StaleSignature,
    StatementMismatch,
    UnknownItem,
    UnknownRecipient,
)
from tsunagu.consent.domain.jcs_rfc8785 import sha256_hex
from tsunagu.consent.domain.record_iso27560 import event_type
from tsunagu.consent.domain.statement import DECISION_TYP, Statement, read_statement
from tsunagu.consent.store import repository as store
from tsunagu.db import Database
from tsunagu.events.schemas.consent import ConsentDecisionRecordedV1

GENESIS = "genesis"
# A person's decisions for different recipients share one sequence: a decision that loses the
# next number to a concurrent one (and nothing else) is checked and stored again.
SEQUENCE_ATTEMPTS = 3


class Decisions:
    def __init__(self, context: ConsentContext) -> None:
        self.context = context

    async def record(self, token: str) -> dict[str, Any]:
        context = self.context
        parsed = jws_rfc7515.parse(token, DECISION_TYP)
        jws_rfc7515.verify_signature(parsed)
        statement = read_statement(parsed.payload)
        now = context.clock()
        signed_at = statement.signed_time
        policy = context.policy
        if signed_at > now + timedelta(seconds=policy.skew_s) or signed_at < now - timedelta(
            seconds=policy.max_signature_age_s
        ):
            raise StaleSignature(f"signed_at must be within {policy.max_signature_age_s} s of now")
        unknown = sorted(set(statement.items) - set(CATALOG))
        if unknown:
            raise UnknownItem(f"not in the catalog: {', '.join(unknown)}")
        _check_action_shape(statement)
        holder = await certificates.holder(context.ca, parsed.chain, kind="signing", at=signed_at, now=now)
        user = holder.user_number
        digest = sha256_hex(token.encode("ascii"))
        decision_id = context.ids()
        effective_from = max(statement.valid_from, now)
        for _ in range(SEQUENCE_ATTEMPTS):
            # Advisory reads (the writes re-check what a concurrent decision could change).
            sequence = await _check_against_records(context.db, statement, user, now)
            # Signed before the transaction opens, so no connection waits on the signer; a
            # receipt whose transaction then fails is never stored nor shown (the signer's audit
            # still accounts for its signature).
            receipt, kid = await context.receipts.countersign(
                {
                    "decision_id": decision_id,
                    "decision_sha256": digest,
                    "sequence": sequence,
                    "recorded_at": rfc3339(now),
                    "recipient": statement.recipient,
                    "action": statement.action,
                    "user_number": user,
                }
            )
            row = {
                "id": decision_id,
                "user_number": user,
                "sequence": sequence,
                "recipient_id": statement.recipient,
                "purpose_code": statement.purpose.code,
                "action": statement.action,
                "request_id": statement.request_id,
                "supersedes": statement.supersedes,
                "previous_sha256": statement.previous or GENESIS,
                "nonce": statement.nonce,
                "decision_sha256": digest,
                "jws": token,
                "certificate_serial": holder.serial,
                "ca_evidence": holder.evidence,
                "signed_at": signed_at,
                "recorded_at": now,
                "effective_from": effective_from,
                "valid_until": statement.valid_until,
                "receipt": receipt,
                "receipt_kid": kid,
            }
            try:
                await self._store(row, statement)
            except store.DecisionConflict:
                facts = await store.decision_facts(context.db, user, statement.recipient, statement.nonce)
                if facts.nonce_used:
                    raise NonceReplayed() from None
                if statement.previous != facts.head:
                    raise PreviousMismatch("another decision of this person was recorded meanwhile") from None
                continue  # only the sequence was taken (another recipient's decision): again
            break
        else:
            raise PreviousMismatch("decisions of this person are being recorded at the same time; try again")
        context.effective.changed(user)  # this process at once; the others by NOTIFY
        return {
            "decision_id": decision_id,
            "decision_sha256": digest,
            "sequence": sequence,
            "recorded_at": rfc3339(now),
            "event": event_type(statement),
            "receipt": receipt,
            "receipt_kid": kid,
        }

    async def _store(self, row: dict[str, Any], statement: Statement) -> None:
        """The decision, its items, the answered request and the event: one transaction."""
        items = (
            [
                {
                    "decision_id": row["id"],
                    "item": item,
                    "value": value,
                    "user_number": row["user_number"],
                    "recipient_id": statement.recipient,
                    "purpose_code": statement.purpose.code,
                    "effective_from": row["effective_from"],
                    "valid_until": statement.valid_until,
                }
                for item, value in sorted(statement.items.items())
            ]
            # A withdrawal ends what it supersedes; it adds no refusals of its own, so a later
            # new grant needs no further supersession.
            if statement.action == "decide"
            else []
        )
        try:
            await store.record_decision(
                self.context.db, self.context.outbox, row, items, _event(row, statement)
            )
        except store.RequestAnswered:
            raise RequestNotPending() from None


async def _check_against_records(db: Database, statement: Statement, user: str, now: datetime) -> int:
    """Every check against what is recorded; the sequence number the decision will take."""
    facts = await store.decision_facts(db, user, statement.recipient, statement.nonce, statement.request_id)
    if facts.nonce_used:
        raise NonceReplayed()  # first: a replayed statement is named as such
    if not facts.recipient_known:
        raise UnknownRecipient(f"{statement.recipient!r} is not registered")
    if statement.request_id is not None:
        request = facts.request
        if request is None:
            raise ConsentRequestNotFound()
        if request["user_number"] != user:
            raise NotYourRequest()
        _matches_request(statement, request)
        if request["state"] != "pending" or request["answer_by"] <= now:
            raise RequestNotPending()
    if statement.supersedes is not None:
        async with db.sessions() as session:
            await _check_supersedes(session, statement, user)
    if statement.previous != facts.head:
        raise PreviousMismatch(f"the chain head for this recipient is {facts.head or 'empty (null)'}")
    return facts.next_sequence


def _check_action_shape(statement: Statement) -> None:
    if statement.action == "decide":
        if statement.request_id is None or statement.notice is None:
            raise MalformedStatement("a decision answers a request: request_id and notice are required")
    else:
        if statement.supersedes is None or statement.request_id is not None:
            raise InvalidWithdrawal("a withdrawal names the decision it supersedes and no request")
        if any(value != "deny" for value in statement.items.values()):
            raise InvalidWithdrawal("a withdrawal denies every item")


def _matches_request(statement: Statement, request: dict[str, Any]) -> None:
    requested = {entry["item"] for entry in request["items"]}
    extra = sorted(set(statement.items) - requested)
    if extra:
        raise ItemsNotRequested(f"not requested: {', '.join(extra)}")
    missing = sorted(requested - set(statement.items))
    if missing:
        raise ItemsMissing(f"undecided: {', '.join(missing)}")
    if statement.recipient != request["recipient_id"]:
        raise StatementMismatch("the recipient is not the request's")
    purpose = statement.purpose
    if (purpose.code, purpose.ja, purpose.en) != (
        request["purpose_code"],
        request["purpose_ja"],
        request["purpose_en"],
    ):
        raise StatementMismatch("the purpose is not the request's")
    notice = statement.notice
    assert notice is not None
    if notice.sha256 != request["notice_sha256"] or notice.version != request["notice_version"]:
        raise StatementMismatch("the notice is not the one the request shows")
    if statement.valid_from != request["valid_from"] or statement.valid_until > request["valid_until"]:
        raise StatementMismatch("the validity must start with the request's and end no later")


async def _check_supersedes(session: Any, statement: Statement, user: str) -> None:
    assert statement.supersedes is not None
    target = await store.decision_row(session, statement.supersedes)
    if target is None:
        raise DecisionNotFound("the decision to supersede does not exist")
    if target["user_number"] != user:
        raise NotYourDecision()
    if target["recipient_id"] != statement.recipient or target["purpose_code"] != statement.purpose.code:
        raise StatementMismatch("a decision supersedes one of the same recipient and purpose")
    if await store.superseded_by(session, statement.supersedes) is not None:
        raise AlreadySuperseded()
    if statement.action == "withdraw":
        if target["action"] != "decide":
            raise InvalidWithdrawal("only a decision can be withdrawn")
        items = await store.items_of(session, [statement.supersedes])
        if set(items.get(statement.supersedes, {})) != set(statement.items):
            raise InvalidWithdrawal("a withdrawal names exactly the items of the decision it ends")


def _event(row: dict[str, Any], statement: Statement) -> ConsentDecisionRecordedV1:
    return ConsentDecisionRecordedV1(
        user_number=row["user_number"],
        decision_id=row["id"],
        sequence=row["sequence"],
        action=statement.action,
        event=event_type(statement),
        recipient=statement.recipient,
        purpose_code=statement.purpose.code,
        request_id=statement.request_id,
        supersedes=statement.supersedes,
        items=dict(statement.items),
        effective_from=row["effective_from"],
        valid_until=row["valid_until"],
        signed_at=row["signed_at"],
        recorded_at=row["recorded_at"],
        certificate_serial=row["certificate_serial"],
        decision_sha256=row["decision_sha256"],
        previous_sha256=statement.previous,
        statement_jws=row["jws"],
        receipt_jws=row["receipt"],
        receipt_kid=row["receipt_kid"],
    )
