"""Reads and writes of push: subscriptions, per-(subscriber, citizen) sequences, deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.store.models import (
    push_delivery,
    push_sequence,
    push_subscription,
    push_subscription_item,
)
from tsunagu.broker.store.repository import _insert

OPEN = ("pending", "sending")  # states that hold back the later deliveries of the same pair


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


# -- subscriptions ------------------------------------------------------------------------------


async def add_subscription(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(push_subscription.insert().values(**values))
    await session.execute(
        push_subscription_item.insert(),
        [{"item": item, "subscription_id": values["id"]} for item in values["items"]],
    )


async def count_subscriptions(session: AsyncSession, subscriber: str) -> int:
    statement = select(push_subscription.c.id).where(push_subscription.c.subscriber == subscriber)
    return len((await session.execute(statement)).all())


async def subscriptions_of(session: AsyncSession, subscriber: str) -> list[dict[str, Any]]:
    statement = (
        select(push_subscription)
        .where(push_subscription.c.subscriber == subscriber)
        .order_by(push_subscription.c.created_at)
    )
    return _rows(await session.execute(statement))


async def subscriptions_for_item(session: AsyncSession, item: str) -> list[dict[str, Any]]:
    statement = (
        select(push_subscription)
        .join(push_subscription_item, push_subscription_item.c.subscription_id == push_subscription.c.id)
        .where(push_subscription_item.c.item == item)
        .order_by(push_subscription.c.id)
    )
    return _rows(await session.execute(statement))


async def delete_subscription(
    session: AsyncSession, subscription_id: str, subscriber: str, now: datetime
) -> bool:
    """Remove the subscriber's own subscription and cancel its open deliveries (values cleared)."""
    result = await session.execute(
        delete(push_subscription).where(
            push_subscription.c.id == subscription_id, push_subscription.c.subscriber == subscriber
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await session.execute(
        delete(push_subscription_item).where(push_subscription_item.c.subscription_id == subscription_id)
    )
    await session.execute(
        update(push_delivery)
        .where(push_delivery.c.subscription_id == subscription_id, push_delivery.c.state.in_(OPEN))
        .values(state="cancelled", value=None, lease_until=None, finished_at=now, last_error="unsubscribed")
    )
    return True


# -- deliveries ---------------------------------------------------------------------------------


async def next_sequence(session: AsyncSession, subscriber: str, user_number: str) -> int:
    """The next number of (subscriber, citizen); the row stays locked until the transaction ends,
    so concurrent changes of one citizen get their numbers in commit order."""
    insert = _insert(session)
    statement = insert(push_sequence).values(subscriber=subscriber, user_number=user_number, last=1)
    statement = statement.on_conflict_do_update(
        index_elements=[push_sequence.c.subscriber, push_sequence.c.user_number],
        set_={"last": push_sequence.c.last + 1},
    ).returning(push_sequence.c.last)
    return int((await session.execute(statement)).scalar_one())


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(push_delivery.insert(), list(rows))


async def claim(
    session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due deliveries for this worker (state ``sending`` until
    ``lease_until``): pending ones whose time has come, and claims whose lease ran out (a worker
    died). A delivery is due only when no earlier one of the same (subscriber, citizen) is still
    open — that is the ordering guarantee. Rows locked by another worker are skipped."""
    d = push_delivery
    earlier = push_delivery.alias("earlier")
    due = or_(
        and_(d.c.state == "pending", d.c.next_attempt_at <= now),
        and_(d.c.state == "sending", d.c.lease_until <= now),
    )
    blocked = exists().where(
        earlier.c.subscriber == d.c.subscriber,
        earlier.c.user_number == d.c.user_number,
        earlier.c.seq < d.c.seq,
        earlier.c.state.in_(OPEN),
    )
    candidates = select(d.c.id).where(due, ~blocked).order_by(d.c.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=d)
    statement = (
        update(d)
        .where(d.c.id.in_(candidates.scalar_subquery()))
        .values(state="sending", lease_until=lease_until, attempts=d.c.attempts + 1)
        .returning(*d.c)
    )
    return _rows(await session.execute(statement))


async def settle(session: AsyncSession, delivery_id: str, values: dict[str, Any]) -> bool:
    """Record the outcome of an attempt, if the claim is still ours to settle."""
    result = await session.execute(
        update(push_delivery)
        .where(push_delivery.c.id == delivery_id, push_delivery.c.state == "sending")
        .values(lease_until=None, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def deliveries_of(
    session: AsyncSession, subscriber: str, *, state: str | None, limit: int
) -> list[dict[str, Any]]:
    statement = select(push_delivery).where(push_delivery.c.subscriber == subscriber)
    if state is not None:
        statement = statement.where(push_delivery.c.state == state)
    statement = statement.order_by(push_delivery.c.created_at.desc(), push_delivery.c.id).limit(limit)
    return _rows(await session.execute(statement))


async def delivery(session: AsyncSession, delivery_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(push_delivery).where(push_delivery.c.id == delivery_id))).first()
    return dict(row._mapping) if row is not None else None


async def redeliver(session: AsyncSession, delivery_id: str, subscriber: str, now: datetime) -> bool:
    """Put the subscriber's dead delivery back in the queue (attempts start again)."""
    result = await session.execute(
        update(push_delivery)
        .where(
            push_delivery.c.id == delivery_id,
            push_delivery.c.subscriber == subscriber,
            push_delivery.c.state == "dead",
        )
        .values(state="pending", attempts=0, next_attempt_at=now, last_error=None, finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def purge_dead_values(session: AsyncSession, before: datetime) -> int:
    """Clear the values of deliveries dead since before ``before`` (retention of the dead letters)."""
    result = await session.execute(
        update(push_delivery)
        .where(
            push_delivery.c.state == "dead",
            push_delivery.c.finished_at < before,
            push_delivery.c.value.is_not(None),
        )
        .values(value=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
