"""NGSI-LD entities, datasets, subscriptions and notifications in PostgreSQL.

The filter shapes (:class:`Comparison`, :class:`AllOf`, :class:`AnyOf`, the geo filters) are what
the domain's ``q`` and geo-query parsers produce; this module turns them into SQL over the
``query_values`` JSONB map and the ``lat``/``lon`` columns (plain PostgreSQL, no PostGIS):

- ``==`` without a compound-member path is JSONB containment (``query_values @> {"a": v}``),
  served by the GIN index; other comparisons read ``query_values -> key [-> member …]``, and the
  ordering ones (``<`` ``>`` ``<=`` ``>=``) also require the same JSON type as the literal (a
  number never compares with a string).
- ``near`` keeps a bounding box around the point (indexed ``lat``/``lon`` range) and then the
  haversine distance; ``within`` keeps the polygon's bounding box and then counts ray crossings
  of each ring (even-odd rule), all in SQL, so pagination and counts stay exact.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.store.models import (
    ngsild_dataset,
    ngsild_entity,
    ngsild_notification,
    ngsild_subscription,
)
from tsunagu.db import Database

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180
Scalar = str | int | float | bool


# -- filter shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """``key`` is an attribute (``temperature``) or sub-attribute (``temperature.accuracy``) of the
    ``query_values`` map; ``members`` a path into a compound value (``address[city]``); ``op``
    one of ``== != < > <= >=``, or ``exists`` (no value)."""

    key: str
    members: tuple[str, ...]
    op: str
    value: Scalar | None = None


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Filter, ...]


Filter = Comparison | AllOf | AnyOf


@dataclass(frozen=True)
class Near:
    lat: float
    lon: float
    max_distance_m: float | None
    min_distance_m: float | None


@dataclass(frozen=True)
class InPolygon:
    """Points inside the polygon (first ring the exterior, the others holes), or outside it when
    ``negate`` (``disjoint``)."""

    rings: tuple[tuple[tuple[float, float], ...], ...]  # (lon, lat) vertices, closed
    negate: bool = False


@dataclass(frozen=True)
class AtPoint:
    lat: float
    lon: float


GeoFilter = Near | InPolygon | AtPoint


@dataclass(frozen=True)
class EntitySelection:
    """What a query asks for, besides paging: every given part must hold."""

    datasets: Sequence[str]  # readable datasets (always restricts)
    types: Sequence[str] | None = None
    ids: Sequence[str] | None = None
    id_pattern: str | None = None
    any_attrs: Sequence[str] | None = None
    q: Filter | None = None
    geo: GeoFilter | None = None


# -- compiling filters --------------------------------------------------------------------------


def _jsonb(value: Any) -> ColumnElement[Any]:
    return cast(literal(json.dumps(value)), JSONB)


JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string"}
ORDERING = {"<": "__lt__", ">": "__gt__", "<=": "__le__", ">=": "__ge__"}


def _comparison(node: Comparison) -> ColumnElement[bool]:
    values = type_coerce(ngsild_entity.c.query_values, JSONB)
    target = values[(node.key, *node.members)] if node.members else values[node.key]
    if node.op == "exists":
        return target.is_not(None)
    if node.op == "==" and not node.members:
        return values.contains({node.key: node.value})
    literal_value = _jsonb(node.value)
    if node.op == "==":
        return target == literal_value
    if node.op == "!=":
        return and_(target.is_not(None), target != literal_value)
    kind = JSON_TYPES[type(node.value)]
    ordered: ColumnElement[bool] = getattr(target, ORDERING[node.op])(literal_value)
    return and_(func.jsonb_typeof(target) == kind, ordered)


def compile_filter(node: Filter) -> ColumnElement[bool]:
    """The SQL condition of a ``q`` filter."""
    if isinstance(node, Comparison):
        return _comparison(node)
    parts = [compile_filter(part) for part in node.parts]
    return and_(*parts) if isinstance(node, AllOf) else or_(*parts)


def _haversine_m(lat: float, lon: float) -> ColumnElement[float]:
    lat1, lon1 = func.radians(ngsild_entity.c.lat), func.radians(ngsild_entity.c.lon)
    lat2, lon2 = math.radians(lat), math.radians(lon)
    a = func.power(func.sin((lat1 - lat2) / 2), 2) + math.cos(lat2) * func.cos(lat1) * func.power(
        func.sin((lon1 - lon2) / 2), 2
    )
    distance: ColumnElement[float] = 2 * EARTH_RADIUS_M * func.asin(func.sqrt(func.least(a, 1.0)))
    return distance


def _bounding_box(lat_min: float, lat_max: float, lon_min: float, lon_max: float) -> ColumnElement[bool]:
    lat, lon = ngsild_entity.c.lat, ngsild_entity.c.lon
    return and_(lat.between(lat_min, lat_max), lon.between(lon_min, lon_max))


def _near(node: Near) -> ColumnElement[bool]:
    distance = _haversine_m(node.lat, node.lon)
    conditions: list[ColumnElement[bool]] = [ngsild_entity.c.lat.is_not(None)]
    if node.max_distance_m is not None:
        dlat = node.max_distance_m / METRES_PER_DEGREE
        cos_lat = math.cos(math.radians(node.lat))
        dlon = 180.0 if cos_lat < 1e-6 else min(180.0, dlat / cos_lat)
        conditions += [
            _bounding_box(node.lat - dlat, node.lat + dlat, node.lon - dlon, node.lon + dlon),
            distance <= node.max_distance_m,
        ]
    if node.min_distance_m is not None:
        conditions.append(distance >= node.min_distance_m)
    return and_(*conditions)


def _inside_ring(ring: Sequence[tuple[float, float]]) -> ColumnElement[bool]:
    """Even-odd rule: a ray from the point towards +lon crosses the ring an odd number of times."""
    lat, lon = ngsild_entity.c.lat, ngsild_entity.c.lon
    crossings: Any = literal(0)
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if y1 == y2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        slope = (x2 - x1) / (y2 - y1)
        crossing = and_(lat >= min(y1, y2), lat < max(y1, y2), lon < x1 + (lat - y1) * slope)
        crossings = crossings + case((crossing, 1), else_=0)
    return crossings % 2 == 1  # type: ignore[no-any-return]


def _in_polygon(node: InPolygon) -> ColumnElement[bool]:
    exterior = node.rings[0]
    lons = [x for x, _ in exterior]
    lats = [y for _, y in exterior]
    inside = and_(
        _bounding_box(min(lats), max(lats), min(lons), max(lons)),
        _inside_ring(exterior),
        *(not_(_inside_ring(hole)) for hole in node.rings[1:]),
    )
    if node.negate:
        return and_(ngsild_entity.c.lat.is_not(None), not_(inside))
    return inside


def compile_geo(node: GeoFilter) -> ColumnElement[bool]:
    """The SQL condition of a geo-query on the entities' ``location`` points."""
    if isinstance(node, Near):
        return _near(node)
    if isinstance(node, InPolygon):
        return _in_polygon(node)
    return and_(ngsild_entity.c.lat == node.lat, ngsild_entity.c.lon == node.lon)


def _where(selection: EntitySelection) -> list[ColumnElement[bool]]:
    entity = ngsild_entity.c
    if not selection.datasets:
        return [false()]
    conditions: list[ColumnElement[bool]] = [entity.dataset_id.in_(list(selection.datasets))]
    if selection.types is not None:
        conditions.append(entity.type.in_(list(selection.types)))
    if selection.ids is not None:
        conditions.append(entity.id.in_(list(selection.ids)))
    if selection.id_pattern is not None:
        conditions.append(entity.id.regexp_match(selection.id_pattern))
    if selection.any_attrs is not None:
        attrs = type_coerce(entity.attrs, JSONB)
        conditions.append(or_(*(attrs.has_key(name) for name in selection.any_attrs)))
    if selection.q is not None:
        conditions.append(compile_filter(selection.q))
    if selection.geo is not None:
        conditions.append(compile_geo(selection.geo))
    return conditions


# -- datasets -----------------------------------------------------------------------------------


async def put_dataset(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Create or replace the dataset; False (nothing written) when another tenant owns it."""
    insert = pg_insert(ngsild_dataset).values(**values)
    changed = {k: insert.excluded[k] for k in values if k not in ("id", "tenant_id")}
    statement = insert.on_conflict_do_update(
        index_elements=[ngsild_dataset.c.id],
        set_=changed,
        where=ngsild_dataset.c.tenant_id == values["tenant_id"],
    ).returning(ngsild_dataset.c.id)
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def datasets(session: AsyncSession) -> list[dict[str, Any]]:
    statement = select(ngsild_dataset).order_by(ngsild_dataset.c.id)
    return [dict(row._mapping) for row in await session.execute(statement)]


async def lock_datasets(session: AsyncSession) -> None:
    """Serialise dataset definitions (a type may belong to one dataset only)."""
    await session.execute(select(func.pg_advisory_xact_lock(0x6E67_7369_6C64)))


async def entities_outside_types(session: AsyncSession, dataset_id: str, types: Sequence[str]) -> int:
    """How many entities of ``dataset_id`` have a type outside ``types``."""
    statement = select(func.count()).where(
        ngsild_entity.c.dataset_id == dataset_id, ngsild_entity.c.type.not_in(list(types))
    )
    return int((await session.execute(statement)).scalar_one())


# -- entities -----------------------------------------------------------------------------------


async def add_entity(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the entity; False (nothing written) when its id exists."""
    statement = (
        pg_insert(ngsild_entity)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[ngsild_entity.c.id])
        .returning(ngsild_entity.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def entity(session: AsyncSession, entity_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    statement = select(ngsild_entity).where(ngsild_entity.c.id == entity_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).first()
    return dict(row._mapping) if row is not None else None


# The hot read: plain SQL on the read pool (one round trip, no transaction), with the read rule of
# the entity's dataset as stored at that moment, so a changed rule holds from the next read on.
ENTITY_AND_ACCESS = (
    "SELECT e.id, e.type, e.attrs, e.context, e.dataset_id, d.access"
    " FROM ngsild_entity e JOIN ngsild_dataset d ON d.id = e.dataset_id WHERE e.id = $1"
)


async def entity_and_access(db: Database, entity_id: str) -> dict[str, Any] | None:
    """The entity (``id type attrs context dataset_id``) and its dataset's ``access``; None when
    either is missing."""
    if db.direct is None:
        raise RuntimeError("reads by id need PostgreSQL")
    row = await db.direct.fetchrow(ENTITY_AND_ACCESS, entity_id)
    return dict(row) if row is not None else None


async def replace_entity(session: AsyncSession, entity_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(ngsild_entity).where(ngsild_entity.c.id == entity_id).values(**values))


async def delete_entity(session: AsyncSession, entity_id: str) -> dict[str, Any] | None:
    statement = delete(ngsild_entity).where(ngsild_entity.c.id == entity_id).returning(ngsild_entity)
    row = (await session.execute(statement)).first()
    return dict(row._mapping) if row is not None else None


async def query_entities(
    session: AsyncSession, selection: EntitySelection, *, limit: int, offset: int, count: bool
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of matching entities (ordered by id) and, when asked, how many match in all."""
    conditions = _where(selection)
    rows: list[dict[str, Any]] = []
    if limit > 0:
        statement = (
            select(ngsild_entity).where(*conditions).order_by(ngsild_entity.c.id).limit(limit).offset(offset)
        )
        rows = [dict(row._mapping) for row in await session.execute(statement)]
    total = None
    if count:
        total = int((await session.execute(select(func.count()).where(*conditions))).scalar_one())
    return rows, total


async def entity_matches(
    session: AsyncSession, entity_id: str, q: Filter | None, geo: GeoFilter | None
) -> bool:
    """Whether the stored entity (as this transaction sees it) satisfies ``q`` and ``geo``."""
    conditions: list[ColumnElement[bool]] = [ngsild_entity.c.id == entity_id]
    conditions.append(compile_filter(q) if q is not None else true())
    conditions.append(compile_geo(geo) if geo is not None else true())
    statement = select(ngsild_entity.c.id).where(*conditions)
    return (await session.execute(statement)).first() is not None


# -- subscriptions and notifications ------------------------------------------------------------


async def add_subscription(session: AsyncSession, values: dict[str, Any]) -> bool:
    statement = (
        pg_insert(ngsild_subscription)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[ngsild_subscription.c.id])
        .returning(ngsild_subscription.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def subscription(session: AsyncSession, subscription_id: str) -> dict[str, Any] | None:
    statement = select(ngsild_subscription).where(ngsild_subscription.c.id == subscription_id)
    row = (await session.execute(statement)).first()
    return dict(row._mapping) if row is not None else None


async def subscriptions_of(
    session: AsyncSession, owner: str, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = ngsild_subscription.c.owner == owner
    statement = (
        select(ngsild_subscription)
        .where(where)
        .order_by(ngsild_subscription.c.created_at, ngsild_subscription.c.id)
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(row._mapping) for row in await session.execute(statement)]
    total = int((await session.execute(select(func.count()).where(where))).scalar_one())
    return rows, total


async def delete_subscription(session: AsyncSession, subscription_id: str, owner: str) -> bool:
    statement = delete(ngsild_subscription).where(
        ngsild_subscription.c.id == subscription_id, ngsild_subscription.c.owner == owner
    )
    return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def active_subscriptions(
    session: AsyncSession, entity_type: str, now: datetime
) -> list[dict[str, Any]]:
    """Active, unexpired subscriptions naming ``entity_type``."""
    subscription = ngsild_subscription.c
    statement = select(ngsild_subscription).where(
        subscription.active.is_(True),
        or_(subscription.expires_at.is_(None), subscription.expires_at > now),
        cast(subscription.entity_types, JSONB).contains([entity_type]),
    )
    return [dict(row._mapping) for row in await session.execute(statement)]


async def add_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(ngsild_notification.insert(), list(rows))


async def claim_due_notifications(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Pending notifications due at ``now``, leased until ``lease_until`` (other replicas skip
    them: ``FOR UPDATE SKIP LOCKED``)."""
    notification = ngsild_notification.c
    statement = (
        select(ngsild_notification)
        .where(notification.state == "pending", notification.next_attempt_at <= now)
        .order_by(notification.next_attempt_at, notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [dict(row._mapping) for row in await session.execute(statement)]
    if rows:
        await session.execute(
            update(ngsild_notification)
            .where(notification.id.in_([row["id"] for row in rows]))
            .values(next_attempt_at=lease_until)
        )
    return rows


async def notification_sent(
    session: AsyncSession,
    notification_id: int,
    *,
    state: str,
    attempts: int,
    next_attempt_at: datetime,
    error: str | None,
) -> None:
    await session.execute(
        update(ngsild_notification)
        .where(ngsild_notification.c.id == notification_id)
        .values(state=state, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error)
    )
