"""Push: subscriptions, changes in, and the fan-out to consenting subscribers.

A party subscribes to items for a purpose with a webhook URL. A change comes in from the item's
provider (``POST /v1/changes``) or, for ``resident.address``, from jlis-sync's
``resident.updated`` event. For every subscription of that item whose subscriber holds consent
*now* (item, purpose, subscriber as recipient), one delivery row is written, numbered per
(subscriber, citizen), with its ``broker.delivery.scheduled`` event — in the transaction that
accepts the change, so an accepted change is never lost and a refused one leaves nothing. The
delivery worker (``deliveries.py``) sends them.

Values: a provider's value is held in the delivery row only until it is delivered (or cancelled;
a dead delivery keeps it for redelivery until the dead-letter retention ends). ``resident.*``
values are not in the event and are never stored: the worker reads the current value from
jlis-sync when it sends.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.catalog import Catalog, Item
from tsunagu.broker.domain.consent_view import ConsentView, Verdict
from tsunagu.broker.domain.errors import UnknownItem, UnknownParty
from tsunagu.broker.domain.exchanges import MAX_ITEMS, PURPOSE
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.providers import JLIS_SYNC, RESIDENT_FIELDS
from tsunagu.broker.domain.push_errors import (
    InvalidChange,
    InvalidSubscription,
    NotItemProvider,
    TooManySubscriptions,
    UnknownSubscription,
)
from tsunagu.broker.store import push as store
from tsunagu.db import Database, call_after_commit
from tsunagu.events import Outbox
from tsunagu.events.schemas.broker import DeliveryScheduledV1
from tsunagu.events.schemas.jlis_sync import ResidentUpdatedV1
from tsunagu.service.egress import EgressPolicy, EgressRefused

RESIDENT_ADDRESS = "resident.address"
MAX_URL = 2048
FAN_OUT_CONCURRENCY = 8


@dataclass(frozen=True)
class Change:
    """What changed: ``value`` inline (a provider's), or read at send time (``jlis-sync``), or
    none (the subscriber pulls it)."""

    provider: str
    user_number: str
    item: Item
    value_source: str  # inline | jlis-sync | none
    value: Any = None


def webhook_url(url: str, egress: EgressPolicy) -> str:
    """The URL if a party may have us call it (https, a public address: the SSRF guard)."""
    if len(url) > MAX_URL:
        raise InvalidSubscription(f"url: at most {MAX_URL} characters")
    try:
        return egress.check_url(url)
    except EgressRefused as refused:
        raise InvalidSubscription(f"url: {refused}") from None


def _subscription_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "subscription_id": row["id"],
        "items": row["items"],
        "purpose": row["purpose_code"],
        "url": row["url"],
        "created_at": row["created_at"].isoformat(),
    }


class Push:
    def __init__(
        self,
        *,
        db: Database,
        outbox: Outbox,
        parties: Parties,
        catalog: Catalog,
        consent: ConsentView,
        max_value_bytes: int,
        max_subscriptions: int,
        egress: EgressPolicy,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.egress = egress  # which webhook URLs a party may register
        self.outbox = outbox
        self.parties = parties
        self.catalog = catalog
        self.consent = consent
        self.max_value_bytes = max_value_bytes
        self.max_subscriptions = max_subscriptions
        self.wake = wake  # tells the local delivery worker that deliveries were committed
        self.clock = clock

    # -- subscriptions ----------------------------------------------------------------------

    async def subscribe(
        self, caller: AccessToken, items: list[str], purpose: str, url: str
    ) -> dict[str, Any]:
        """A subscription of the calling party (items must be in the catalog)."""
        if not items or len(items) > MAX_ITEMS or len(set(items)) != len(items):
            raise InvalidSubscription(f"items: 1 to {MAX_ITEMS} distinct item ids")
        if not PURPOSE.match(purpose):
            raise InvalidSubscription("purpose: a purpose code (lower-case, e.g. treatment)")
        webhook_url(url, self.egress)
        party = await self.parties.party(caller.client_id)
        await self.catalog.items(items)
        row = {
            "id": "sb_" + secrets.token_urlsafe(15),
            "subscriber": party.client_id,
            "tenant_id": party.tenant_id,
            "items": items,
            "purpose_code": purpose,
            "url": url,
            "created_at": self.clock(),
        }
        async with self.db.transaction() as session:
            if await store.count_subscriptions(session, party.client_id) >= self.max_subscriptions:
                raise TooManySubscriptions(f"at most {self.max_subscriptions} subscriptions per client")
            await store.add_subscription(session, row)
        return _subscription_view(row)

    async def subscriptions(self, caller: AccessToken) -> list[dict[str, Any]]:
        """The calling party's subscriptions."""
        async with self.db.sessions() as session:
            rows = await store.subscriptions_of(session, caller.client_id)
        return [_subscription_view(row) for row in rows]

    async def unsubscribe(self, caller: AccessToken, subscription_id: str) -> None:
        """Delete the caller's subscription; its deliveries not yet sent are cancelled."""
        async with self.db.transaction() as session:
            if not await store.delete_subscription(session, subscription_id, caller.client_id, self.clock()):
                raise UnknownSubscription("no such subscription of this client")

    # -- changes in ---------------------------------------------------------------------------

    async def publish(self, caller: AccessToken, sub: str, item_id: str, value: Any) -> dict[str, Any]:
        """A provider's change about the citizen it knows as ``sub``: validated, then fanned out
        (202: accepted; the deliveries are committed)."""
        provider = await self.parties.party(caller.client_id)
        item = (await self.catalog.items([item_id]))[item_id]
        if provider.client_id not in {p["client_id"] for p in item.providers}:
            raise NotItemProvider(f"{caller.client_id} does not provide {item_id}")
        if value is not None:
            if len(json.dumps(value, ensure_ascii=False).encode()) > self.max_value_bytes:
                raise InvalidChange(f"value: at most {self.max_value_bytes} bytes")
            errors = sorted(item.validator.iter_errors(value), key=lambda e: list(e.path))
            if errors:  # the path, never the value
                where = "/".join(str(p) for p in errors[0].path) or "(root)"
                raise InvalidChange(f"value: does not match the schema of {item_id} at {where}")
            value = item.clean(value)
        user_number = await self.parties.user_number(provider, sub)
        change = Change(provider.client_id, user_number, item, "none" if value is None else "inline", value)
        change_id = "ch_" + secrets.token_urlsafe(15)
        async with self.db.transaction() as session:
            await self.fan_out(session, change_id, change)
        return {"change_id": change_id, "item": item_id}

    async def on_resident_updated(self, session: AsyncSession, event: ResidentUpdatedV1) -> None:
        """jlis-sync says a citizen moved: push ``resident.address`` (its value is read from
        jlis-sync when each delivery is sent)."""
        if "address" not in event.changed_fields or not event.basic4_available:
            return
        try:
            item = (await self.catalog.items([RESIDENT_ADDRESS]))[RESIDENT_ADDRESS]
        except UnknownItem:
            return  # nobody defined the item: nobody can have subscribed to it
        change = Change(JLIS_SYNC, event.user_number, item, JLIS_SYNC)
        await self.fan_out(session, "ch_" + secrets.token_urlsafe(15), change)

    async def fan_out(self, session: AsyncSession, change_id: str, change: Change) -> int:
        """Delivery rows (and their events) in ``session`` for every subscription of the item
        whose subscriber holds consent now; returns how many."""
        subscriptions = await store.subscriptions_for_item(session, change.item.id)
        now = self.clock()
        bound = asyncio.Semaphore(FAN_OUT_CONCURRENCY)  # each check may take a connection

        async def check(subscription: dict[str, Any]) -> Verdict:
            async with bound:
                return await self.consent.check(
                    change.user_number,
                    subscription["subscriber"],
                    subscription["purpose_code"],
                    [change.item.id],
                    now,
                )

        verdicts = await asyncio.gather(*(check(s) for s in subscriptions))
        rows: list[dict[str, Any]] = []
        events: list[DeliveryScheduledV1] = []
        for subscription, verdict in zip(subscriptions, verdicts, strict=True):
            if change.item.id not in verdict.allowed:
                continue  # no consent: nothing is sent, and the subscriber learns nothing
            try:
                await self.parties.party(subscription["subscriber"])
            except UnknownParty:
                continue
            sequence = await store.next_sequence(session, subscription["subscriber"], change.user_number)
            row = {
                "id": "dl_" + secrets.token_urlsafe(15),
                "change_id": change_id,
                "subscription_id": subscription["id"],
                "subscriber": subscription["subscriber"],
                "tenant_id": subscription["tenant_id"],
                "provider": change.provider,
                "user_number": change.user_number,
                "item": change.item.id,
                "purpose_code": subscription["purpose_code"],
                "url": subscription["url"],
                "seq": sequence,
                "value_source": change.value_source,
                "value": change.value,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "lease_until": None,
                "last_error": None,
                "created_at": now,
                "finished_at": None,
            }
            rows.append(row)
            events.append(scheduled_event(row, now))
        await store.add_deliveries(session, rows)
        await self.outbox.add_many(session, events)
        if rows:
            call_after_commit(session, self.wake)
        return len(rows)


def scheduled_event(row: dict[str, Any], at: datetime) -> DeliveryScheduledV1:
    return DeliveryScheduledV1(
        delivery_id=row["id"],
        change_id=row["change_id"],
        subscription_id=row["subscription_id"],
        subscriber=row["subscriber"],
        tenant_id=row["tenant_id"],
        provider=row["provider"],
        user_number=row["user_number"],
        item=row["item"],
        purpose_code=row["purpose_code"],
        sequence=row["seq"],
        at=at,
    )


def resident_value(item: str, record: dict[str, Any] | None) -> Any:
    """The ``resident.*`` item's value from jlis-sync's record, as a pull would give it."""
    field = RESIDENT_FIELDS.get(item)
    if record is None or field is None or record.get(field) is None:
        return None
    return {field: record[field]}
