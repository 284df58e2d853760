"""NGSI-LD subscriptions (ETSI GS CIM 009 §5.2.12, §5.8) and the notifications a change causes.

A subscription names entity types (optionally an id or ``idPattern``), ``watchedAttributes``,
``q`` and ``geoQ``; its owner is the client that created it, and it only ever hears of entities
of datasets that client may read (checked again at every change). A change of a matching entity
writes one ``ngsild_notification`` row per subscription *in the change's transaction*; the
:class:`NotificationSender` posts them after the commit, so a crash loses none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.errors import InsufficientScope
from tsunagu.broker.domain.ngsild.datasets import READ_SCOPE, DatasetAccessDenied, Datasets
from tsunagu.broker.domain.ngsild.entities import (
    check_attribute_name,
    check_entity_id,
    check_type,
    render,
)
from tsunagu.broker.domain.ngsild.errors import (
    AlreadyExists,
    BadRequestData,
    OperationNotSupported,
    ResourceNotFound,
)
from tsunagu.broker.domain.ngsild.geoquery import GeoQuery, parse_geoquery
from tsunagu.broker.domain.ngsild.query_language import parse_q
from tsunagu.broker.store import ngsild as store
from tsunagu.db import Database
from tsunagu.service.egress import EgressPolicy, EgressRefused

SUBSCRIPTION_MEMBERS = {
    "id",
    "type",
    "@context",
    "description",
    "subscriptionName",
    "entities",
    "watchedAttributes",
    "q",
    "geoQ",
    "notification",
    "expiresAt",
    "isActive",
}
FORMATS = ("normalized", "keyValues")
ACCEPTS = ("application/json", "application/ld+json")


def _now() -> datetime:
    return datetime.now(UTC)


def check_endpoint(uri: Any, egress: EgressPolicy) -> str:
    """A notification endpoint a party may have us call: https, a public address (the SSRF
    guard; http on loopback in dev and test only), no credentials, no fragment."""
    try:
        return egress.check_url(uri)
    except EgressRefused as refused:
        raise BadRequestData(f"notification.endpoint.uri: {refused}") from None


def _names(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 100
        or not all(isinstance(n, str) for n in value)
    ):
        raise BadRequestData(f"{what}: a list of 1 to 100 attribute names")
    return [check_attribute_name(n) for n in value]


def _entities(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= 20:
        raise BadRequestData("entities: a list of 1 to 20 {type, id?, idPattern?}")
    selectors = []
    for selector in value:
        if not isinstance(selector, dict) or not set(selector) <= {"type", "id", "idPattern"}:
            raise BadRequestData("entities: each is {type, id?, idPattern?}")
        checked = {"type": check_type(selector.get("type"))}
        if "id" in selector:
            checked["id"] = check_entity_id(selector["id"])
        if "idPattern" in selector:
            checked["idPattern"] = check_id_pattern(selector["idPattern"])
        selectors.append(checked)
    return selectors


def check_id_pattern(pattern: Any) -> str:
    """An ``idPattern``: a regular expression of at most 256 characters."""
    if not isinstance(pattern, str) or not 1 <= len(pattern) <= 256:
        raise BadRequestData("idPattern: a regular expression of at most 256 characters")
    try:
        re.compile(pattern)
    except re.error:
        raise BadRequestData("idPattern: not a valid regular expression") from None
    return pattern


def _notification(value: Any, egress: EgressPolicy) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= {"attributes", "format", "endpoint"}:
        raise BadRequestData("notification: {attributes?, format?, endpoint}")
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, dict) or not set(endpoint) <= {"uri", "accept"}:
        raise BadRequestData("notification.endpoint: {uri, accept?}")
    accept = endpoint.get("accept", "application/json")
    fmt = value.get("format", "normalized")
    if accept not in ACCEPTS or fmt not in FORMATS:
        raise BadRequestData("notification: format normalized|keyValues, accept application/json|ld+json")
    checked: dict[str, Any] = {
        "format": fmt,
        "endpoint": {"uri": check_endpoint(endpoint.get("uri"), egress), "accept": accept},
    }
    attributes = _names(value.get("attributes"), "notification.attributes")
    if attributes is not None:
        checked["attributes"] = attributes
    return checked


def _expires(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadRequestData("expiresAt: an ISO 8601 date-time with a time zone")
    return parsed


@dataclass(frozen=True)
class Subscription:
    id: str
    owner: str
    document: dict[str, Any]
    active: bool
    expires_at: datetime | None

    def view(self, now: datetime) -> dict[str, Any]:
        expired = self.expires_at is not None and self.expires_at <= now
        status = "expired" if expired else ("active" if self.active else "paused")
        return {
            **self.document,
            "id": self.id,
            "type": "Subscription",
            "isActive": self.active,
            "status": status,
        }

    def selects(self, entity_id: str, entity_type: str) -> bool:
        for selector in self.document["entities"]:
            if selector["type"] != entity_type:
                continue
            if "id" in selector and selector["id"] != entity_id:
                continue
            if "idPattern" in selector and re.search(selector["idPattern"], entity_id) is None:
                continue
            return True
        return False

    def watches(self, changed: Sequence[str]) -> bool:
        watched = self.document.get("watchedAttributes")
        return watched is None or bool(set(watched) & set(changed))


def _subscription(row: dict[str, Any]) -> Subscription:
    expires = row["expires_at"]
    return Subscription(
        id=row["id"],
        owner=row["owner"],
        document=row["document"],
        active=bool(row["active"]),
        expires_at=expires.replace(tzinfo=UTC) if expires is not None and expires.tzinfo is None else expires,
    )


def validate_subscription(body: Any, egress: EgressPolicy) -> dict[str, Any]:
    """The subscription as stored (validated, defaults filled); ``q`` and ``geoQ`` are parsed
    here once so a bad one is refused at creation, never at notification time."""
    if not isinstance(body, dict) or body.get("type") != "Subscription":
        raise BadRequestData('a subscription is an object with "type": "Subscription"')
    unknown = set(body) - SUBSCRIPTION_MEMBERS
    if unknown:
        raise OperationNotSupported(f"subscription member not supported: {sorted(unknown)[0]}")
    document: dict[str, Any] = {
        "type": "Subscription",
        "entities": _entities(body.get("entities")),
        "notification": _notification(body.get("notification"), egress),
    }
    watched = _names(body.get("watchedAttributes"), "watchedAttributes")
    if watched is not None:
        document["watchedAttributes"] = watched
    if "q" in body:
        if not isinstance(body["q"], str):
            raise BadRequestData("q: a string")
        parse_q(body["q"])
        document["q"] = body["q"]
    if "geoQ" in body:
        geo = body["geoQ"]
        if not isinstance(geo, dict) or not set(geo) <= {"georel", "geometry", "coordinates", "geoproperty"}:
            raise BadRequestData("geoQ: {georel, geometry, coordinates, geoproperty?}")
        parse_geoquery(_geoquery(geo))
        document["geoQ"] = geo
    for text in ("description", "subscriptionName"):
        if text in body:
            if not isinstance(body[text], str) or len(body[text]) > 1000:
                raise BadRequestData(f"{text}: a string of at most 1000 characters")
            document[text] = body[text]
    if "expiresAt" in body:
        _expires(body["expiresAt"])
        document["expiresAt"] = body["expiresAt"]
    if not isinstance(body.get("isActive", True), bool):
        raise BadRequestData("isActive: true or false")
    return document


def _geoquery(geo: dict[str, Any]) -> GeoQuery:
    return GeoQuery(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty"))


class Subscriptions:
    def __init__(
        self, db: Database, datasets: Datasets, egress: EgressPolicy, clock: Callable[[], datetime] = _now
    ) -> None:
        self.egress = egress  # which notification endpoints may be registered (the SSRF guard)
        self.db = db
        self.datasets = datasets
        self.clock = clock

    async def create(self, caller: AccessToken, body: Any) -> str:
        """Create a subscription owned by the caller; returns its id."""
        if READ_SCOPE not in caller.scopes:
            raise InsufficientScope(READ_SCOPE)
        document = validate_subscription(body, self.egress)
        subscription_id = check_entity_id(body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex}"))
        types = sorted({selector["type"] for selector in document["entities"]})
        for entity_type in types:
            dataset = await self.datasets.for_type(entity_type)
            if dataset is None:
                raise BadRequestData(f"no dataset holds entity type {entity_type}")
            if not dataset.readable_by(caller):
                raise DatasetAccessDenied(f"this client may not read dataset {dataset.id}")
        values = {
            "id": subscription_id,
            "owner": caller.client_id,
            "entity_types": types,
            "document": document,
            "active": body.get("isActive", True),
            "expires_at": _expires(document.get("expiresAt")),
            "created_at": self.clock(),
        }
        async with self.db.transaction() as session:
            if not await store.add_subscription(session, values):
                raise AlreadyExists(f"subscription {subscription_id} exists")
        return subscription_id

    async def get(self, caller: AccessToken, subscription_id: str) -> dict[str, Any]:
        async with self.db.sessions() as session:
            row = await store.subscription(session, subscription_id)
        if row is None or row["owner"] != caller.client_id:
            raise ResourceNotFound(f"no subscription {subscription_id} of this client")
        return _subscription(row).view(self.clock())

    async def of(self, caller: AccessToken, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        async with self.db.sessions() as session:
            rows, total = await store.subscriptions_of(session, caller.client_id, limit=limit, offset=offset)
        now = self.clock()
        return [_subscription(row).view(now) for row in rows], total

    async def delete(self, caller: AccessToken, subscription_id: str) -> None:
        async with self.db.transaction() as session:
            if not await store.delete_subscription(session, subscription_id, caller.client_id):
                raise ResourceNotFound(f"no subscription {subscription_id} of this client")

    async def on_change(
        self,
        session: AsyncSession,
        entity: dict[str, Any],
        changed: Sequence[str],
        readers: frozenset[str] | None,
    ) -> int:
        """Queue the notifications a committed-with-this-transaction change causes; returns how
        many. ``entity`` is the stored row after the change; ``readers`` its dataset's (None:
        public)."""
        now = self.clock()
        rows = []
        for row in await store.active_subscriptions(session, entity["type"], now):
            subscription = _subscription(row)
            if readers is not None and subscription.owner not in readers:
                continue
            if not subscription.selects(entity["id"], entity["type"]) or not subscription.watches(changed):
                continue
            document = subscription.document
            q = parse_q(document["q"]) if "q" in document else None
            geo = parse_geoquery(_geoquery(document["geoQ"])) if "geoQ" in document else None
            if (q is not None or geo is not None) and not await store.entity_matches(
                session, entity["id"], q, geo
            ):
                continue
            rows.append(self._notification(subscription, entity, now))
        await store.add_notifications(session, rows)
        return len(rows)

    def _notification(
        self, subscription: Subscription, entity: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        settings = subscription.document["notification"]
        attributes = settings.get("attributes")
        data = render(
            entity["id"],
            entity["type"],
            entity["attrs"],
            pick=frozenset(attributes) if attributes is not None else None,
            key_values=settings["format"] == "keyValues",
        )
        payload = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4().hex}",
            "type": "Notification",
            "subscriptionId": subscription.id,
            "data": [data],
            "accept": settings["endpoint"]["accept"],
        }
        return {
            "subscription_id": subscription.id,
            "endpoint": settings["endpoint"]["uri"],
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
        }
