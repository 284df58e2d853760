"""Datasets of non-personal data and who may use them.

A dataset names the entity types it holds; a type belongs to exactly one dataset, so an entity's
dataset is its type's (a write of a type no dataset covers is refused). ``access`` is
``"public"`` (anyone reads, no token) or a list of client ids (their tokens must carry
``ngsi-ld:read``); ``writers`` are the client ids that may create, change and delete entities
(with ``ngsi-ld:write``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.errors import CatalogConflict, InsufficientScope, InvalidCatalogEntry, InvalidToken
from tsunagu.broker.domain.ngsild.entities import TYPE_NAME
from tsunagu.broker.store import ngsild as store
from tsunagu.db import Database
from tsunagu.errors import Forbidden

READ_SCOPE = "ngsi-ld:read"
WRITE_SCOPE = "ngsi-ld:write"
DATASET_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PUBLIC = "public"
CACHE_S = 2.0


class DatasetAccessDenied(Forbidden):
    code = "dataset-access-denied"
    title = "This client may not use this dataset"


@dataclass(frozen=True)
class Dataset:
    id: str
    tenant_id: str
    label_ja: str
    label_en: str
    entity_types: tuple[str, ...]
    readers: frozenset[str] | None  # None: public
    writers: frozenset[str]

    @property
    def public(self) -> bool:
        return self.readers is None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label_ja": self.label_ja,
            "label_en": self.label_en,
            "entity_types": list(self.entity_types),
            "access": PUBLIC if self.readers is None else sorted(self.readers),
            "writers": sorted(self.writers),
        }

    def readable_by(self, caller: AccessToken | None) -> bool:
        return readable_by(self.readers, caller)

    def check_read(self, caller: AccessToken | None) -> None:
        """Refuse a caller who may not read: 401 without a token, 403 otherwise."""
        check_read(self.id, self.readers, caller)

    def check_write(self, caller: AccessToken | None) -> None:
        if caller is None:
            raise InvalidToken("writes need an access token")
        if WRITE_SCOPE not in caller.scopes:
            raise InsufficientScope(WRITE_SCOPE)
        if caller.client_id not in self.writers:
            raise DatasetAccessDenied(f"this client may not write dataset {self.id}")


def readers_of(access: Any) -> frozenset[str] | None:
    """The client ids a stored ``access`` rule lets read; None for a public dataset."""
    return None if access == PUBLIC else frozenset(access)


def readable_by(readers: frozenset[str] | None, caller: AccessToken | None) -> bool:
    if readers is None:
        return True
    return caller is not None and READ_SCOPE in caller.scopes and caller.client_id in readers


def check_read(dataset_id: str, readers: frozenset[str] | None, caller: AccessToken | None) -> None:
    """Refuse a caller who may not read dataset ``dataset_id`` (``readers``: None if public): 401
    without a token, 403 otherwise."""
    if readable_by(readers, caller):
        return
    if caller is None:
        raise InvalidToken(f"dataset {dataset_id} is not public: send an access token")
    if READ_SCOPE not in caller.scopes:
        raise InsufficientScope(READ_SCOPE)
    raise DatasetAccessDenied(f"this client may not read dataset {dataset_id}")


def _dataset(row: dict[str, Any]) -> Dataset:
    return Dataset(
        id=row["id"],
        tenant_id=row["tenant_id"],
        label_ja=row["label_ja"],
        label_en=row["label_en"],
        entity_types=tuple(row["entity_types"]),
        readers=readers_of(row["access"]),
        writers=frozenset(row["writers"]),
    )


def _client_ids(value: Any, what: str) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) > 100
        or not all(isinstance(c, str) and 1 <= len(c) <= 64 for c in value)
    ):
        raise InvalidCatalogEntry(f"{what}: a list of at most 100 client ids")
    return sorted(set(value))


class Datasets:
    """The datasets, cached briefly in memory (every replica re-reads them within ``CACHE_S``)."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.clock = clock
        self._by_type: dict[str, Dataset] = {}
        self._all: list[Dataset] = []
        self._fresh_until = 0.0

    async def put(self, tenant_id: str, dataset_id: str, entry: dict[str, Any]) -> Dataset:
        """Define or replace a dataset of this tenant (another tenant's, or a type another
        dataset holds: 409; dropping a type that still has entities: 409)."""
        if not DATASET_ID.match(dataset_id):
            raise InvalidCatalogEntry("dataset id: lower-case letters, digits, . _ - (at most 64)")
        types = entry["entity_types"]
        if not types or len(types) > 100 or not all(isinstance(t, str) and TYPE_NAME.match(t) for t in types):
            raise InvalidCatalogEntry("entity_types: 1 to 100 NGSI-LD type terms")
        access = entry["access"]
        values = {
            "id": dataset_id,
            "tenant_id": tenant_id,
            "label_ja": entry["label_ja"],
            "label_en": entry["label_en"],
            "entity_types": sorted(set(types)),
            "access": PUBLIC if access == PUBLIC else _client_ids(access, 'access ("public" or client ids)'),
            "writers": _client_ids(entry["writers"], "writers"),
            "updated_at": self.clock(),
        }
        async with self.db.transaction() as session:
            await store.lock_datasets(session)
            for other in map(_dataset, await store.datasets(session)):
                taken = set(other.entity_types) & set(types)
                if other.id != dataset_id and taken:
                    raise CatalogConflict(f"type {sorted(taken)[0]} belongs to dataset {other.id}")
            if await store.entities_outside_types(session, dataset_id, values["entity_types"]):
                raise CatalogConflict("entities of a type this definition drops still exist")
            if not await store.put_dataset(session, values):
                raise CatalogConflict(f"dataset {dataset_id} is administered by another tenant")
        self._fresh_until = 0.0
        return _dataset(values)

    async def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._fresh_until:
            return
        async with self.db.sessions() as session:
            found = [_dataset(row) for row in await store.datasets(session)]
        self._all = found
        self._by_type = {t: dataset for dataset in found for t in dataset.entity_types}
        self._fresh_until = now + CACHE_S

    async def all(self) -> list[Dataset]:
        await self._refresh()
        return list(self._all)

    async def for_type(self, entity_type: str) -> Dataset | None:
        await self._refresh()
        return self._by_type.get(entity_type)

    async def by_id(self, dataset_id: str) -> Dataset | None:
        await self._refresh()
        found = next((d for d in self._all if d.id == dataset_id), None)
        if found is None:  # defined by another replica since our last look
            self._fresh_until = 0.0
            await self._refresh()
            found = next((d for d in self._all if d.id == dataset_id), None)
        return found

    async def readable(self, caller: AccessToken | None) -> list[Dataset]:
        await self._refresh()
        return [d for d in self._all if d.readable_by(caller)]
