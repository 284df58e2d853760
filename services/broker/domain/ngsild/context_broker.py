"""The NGSI-LD context broker's entity operations (ETSI GS CIM 009 §5.6, §5.7) over the datasets'
access rules: create, retrieve, query, update and append attributes, delete. Every change and the
notifications it causes commit in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.ngsild.datasets import Dataset, Datasets, check_read, readers_of
from tsunagu.broker.domain.ngsild.entities import (
    MAX_ENTITY_BYTES,
    Entity,
    check_attributes,
    check_entity_id,
    entity_size,
    flat_values,
    location_of,
    render,
)
from tsunagu.broker.domain.ngsild.errors import AlreadyExists, BadRequestData, ResourceNotFound
from tsunagu.broker.domain.ngsild.subscriptions import Subscriptions
from tsunagu.broker.store import ngsild as store
from tsunagu.db import Database
from tsunagu.db.engine import call_after_commit

MAX_LIMIT = 1000


@dataclass(frozen=True)
class EntityQuery:
    types: list[str] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    attrs: list[str] | None = None
    q: store.Filter | None = None
    geo: store.GeoFilter | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(frozen=True)
class StoredEntity:
    id: str
    type: str
    attrs: dict[str, Any]
    context: Any

    def render(self, pick: frozenset[str] | None, key_values: bool) -> dict[str, Any]:
        return render(self.id, self.type, self.attrs, pick=pick, key_values=key_values)


def _stored(row: dict[str, Any]) -> StoredEntity:
    return StoredEntity(row["id"], row["type"], row["attrs"], row["context"])


def _now() -> datetime:
    return datetime.now(UTC)


class ContextBroker:
    def __init__(
        self,
        db: Database,
        datasets: Datasets,
        subscriptions: Subscriptions,
        on_queued: Callable[[], None],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.db = db
        self.datasets = datasets
        self.subscriptions = subscriptions
        self.on_queued = on_queued  # wakes the notification sender (after commit)
        self.clock = clock

    async def _writable(self, entity_type: str, caller: AccessToken | None) -> Dataset:
        dataset = await self.datasets.for_type(entity_type)
        if dataset is None:
            raise BadRequestData(f"no dataset holds entity type {entity_type}")
        dataset.check_write(caller)
        return dataset

    def _columns(self, attrs: dict[str, Any]) -> dict[str, Any]:
        location = location_of(attrs)
        return {
            "attrs": attrs,
            "query_values": flat_values(attrs),
            "lat": location[0] if location else None,
            "lon": location[1] if location else None,
            "modified_at": self.clock(),
        }

    async def create(self, caller: AccessToken | None, document: Any, context: Any) -> str:
        """Create an entity in its type's dataset (the caller must be one of its writers)."""
        if entity_size(document) > MAX_ENTITY_BYTES:
            raise BadRequestData(f"an entity is at most {MAX_ENTITY_BYTES} bytes of JSON")
        entity = Entity.from_document(document)
        dataset = await self._writable(entity.type, caller)
        values = {
            "id": entity.id,
            "type": entity.type,
            "dataset_id": dataset.id,
            "context": context,
            "created_at": self.clock(),
            **self._columns(entity.attrs),
        }
        async with self.db.transaction() as session:
            if not await store.add_entity(session, values):
                raise AlreadyExists(f"entity {entity.id} exists")
            await self._changed(session, values, list(entity.attrs), dataset)
        return entity.id

    async def _changed(
        self, session: Any, row: dict[str, Any], changed: Sequence[str], dataset: Dataset
    ) -> None:
        if await self.subscriptions.on_change(session, row, changed, dataset.readers):
            call_after_commit(session, self.on_queued)

    async def get(self, caller: AccessToken | None, entity_id: str) -> StoredEntity:
        """The entity, if the caller may read its dataset (no token needed for a public one).

        The hot path: one statement reads the entity and its dataset's current read rule, so a
        changed rule applies from the next read on, in every replica, with no cache to invalidate.
        """
        check_entity_id(entity_id)
        row = await store.entity_and_access(self.db, entity_id)
        if row is None:
            raise ResourceNotFound(f"no entity {entity_id}")
        check_read(row["dataset_id"], readers_of(row["access"]), caller)
        return _stored(row)

    async def query(
        self, caller: AccessToken | None, query: EntityQuery
    ) -> tuple[list[StoredEntity], int | None]:
        """A page of the entities the caller may read that match ``query`` (and the total)."""
        if not (query.types or query.ids or query.id_pattern or query.attrs or query.q or query.geo):
            raise BadRequestData("a query needs at least one of type, id, idPattern, attrs, q or a geo-query")
        readable = {d.id for d in await self.datasets.readable(caller)}
        for entity_type in query.types or ():
            dataset = await self.datasets.for_type(entity_type)
            if dataset is not None:
                dataset.check_read(caller)  # asking for a type one may not read is refused, not emptied
        selection = store.EntitySelection(
            datasets=sorted(readable),
            types=query.types,
            ids=query.ids,
            id_pattern=query.id_pattern,
            any_attrs=query.attrs if query.q is None else None,
            q=query.q,
            geo=query.geo,
        )
        try:
            async with self.db.sessions() as session:
                rows, total = await store.query_entities(
                    session, selection, limit=query.limit, offset=query.offset, count=query.count
                )
        except DBAPIError as error:
            if query.id_pattern is not None:
                raise BadRequestData("idPattern: not a regular expression PostgreSQL accepts") from error
            raise
        return [_stored(row) for row in rows], total

    async def update_attributes(
        self,
        caller: AccessToken | None,
        entity_id: str,
        fragment: Any,
        *,
        append: bool,
        overwrite: bool = True,
    ) -> list[str]:
        """PATCH (update existing attributes only) or POST (append, replacing unless
        ``overwrite`` is false) ``/entities/{id}/attrs``; returns the attributes not changed."""
        check_entity_id(entity_id)
        if not isinstance(fragment, dict):
            raise BadRequestData("the attributes are a JSON object")
        if entity_size(fragment) > MAX_ENTITY_BYTES:
            raise BadRequestData(f"an update is at most {MAX_ENTITY_BYTES} bytes of JSON")
        attributes = check_attributes(fragment)
        if not attributes:
            raise BadRequestData("no attributes to change")
        async with self.db.transaction() as session:
            row = await store.entity(session, entity_id, for_update=True)
            if row is None:
                raise ResourceNotFound(f"no entity {entity_id}")
            dataset = await self._writable(row["type"], caller)
            attrs = dict(row["attrs"])
            if append:
                changed = [n for n in attributes if overwrite or n not in attrs]
            else:
                changed = [n for n in attributes if n in attrs]
            attrs.update({name: attributes[name] for name in changed})
            if entity_size(attrs) > MAX_ENTITY_BYTES:
                raise BadRequestData(f"an entity is at most {MAX_ENTITY_BYTES} bytes of JSON")
            if changed:
                columns = self._columns(attrs)
                await store.replace_entity(session, entity_id, columns)
                await self._changed(session, {**row, **columns}, changed, dataset)
        return [name for name in attributes if name not in changed]

    async def delete(self, caller: AccessToken | None, entity_id: str) -> None:
        check_entity_id(entity_id)
        async with self.db.transaction() as session:
            row = await store.entity(session, entity_id, for_update=True)
            if row is None:
                raise ResourceNotFound(f"no entity {entity_id}")
            await self._writable(row["type"], caller)
            await store.delete_entity(session, entity_id)
