"""The data catalog: personal data items (JSON Schema, labels, sensitivity, providers).

A provider's value must validate against its item's schema (JSON Schema 2020-12), and the consumer
receives only the properties the schema declares: a provider that sends more than the item
covers leaks nothing through the broker. Special-care items (要配慮個人情報: medical data) are
marked; consent for them is always explicit and per item (consent never has a blanket allow).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tsunagu.broker.domain.errors import (
    CatalogConflict,
    InvalidCatalogEntry,
    ProviderDataInvalid,
    UnknownItem,
)
from tsunagu.broker.domain.providers import JLIS_SYNC
from tsunagu.broker.store import repository as store
from tsunagu.db import Database
from tsunagu.service.egress import EgressPolicy, EgressRefused

log = logging.getLogger(__name__)
ITEM_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
SENSITIVITIES = ("normal", "special-care")
MAX_SCHEMA_BYTES = 16_384
CACHE_S = 5.0


@dataclass(frozen=True)
class Item:
    id: str
    tenant_id: str
    label_ja: str
    label_en: str
    sensitivity: str
    schema: dict[str, Any]
    providers: list[dict[str, str]]
    validator: Draft202012Validator

    @property
    def special_care(self) -> bool:
        return self.sensitivity == "special-care"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label_ja": self.label_ja,
            "label_en": self.label_en,
            "sensitivity": self.sensitivity,
            "schema": self.schema,
            "providers": [p["client_id"] for p in self.providers],
        }

    def clean(self, value: Any) -> Any:
        """The value reduced to what the schema declares, or :class:`ProviderDataInvalid`."""
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            # The path, never the value: values are personal data.
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            log.error("provider data failed its schema", extra={"item": self.id, "at": where})
            raise ProviderDataInvalid(f"{self.id}: invalid at {where}")
        return _project(self.schema, value)


def _project(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        properties = schema["properties"]
        return {k: _project(properties[k], v) for k, v in value.items() if k in properties}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_project(schema["items"], v) for v in value]
    return value


def _item(row: dict[str, Any]) -> Item:
    return Item(
        id=row["id"],
        tenant_id=row["tenant_id"],
        label_ja=row["label_ja"],
        label_en=row["label_en"],
        sensitivity=row["sensitivity"],
        schema=row["schema"],
        providers=list(row["providers"]),
        validator=Draft202012Validator(row["schema"]),
    )


def _check_provider(entry: Any, egress: EgressPolicy) -> dict[str, str]:
    if not isinstance(entry, dict) or set(entry) != {"client_id", "endpoint"}:
        raise InvalidCatalogEntry('each provider is {"client_id", "endpoint"}')
    client_id, endpoint = entry["client_id"], entry["endpoint"]
    if not isinstance(client_id, str) or not (1 <= len(client_id) <= 64):
        raise InvalidCatalogEntry("provider client_id: 1 to 64 characters")
    if client_id == JLIS_SYNC:
        if endpoint != "internal:jlis-sync":
            raise InvalidCatalogEntry('jlis-sync is reached at "internal:jlis-sync"')
        return {"client_id": client_id, "endpoint": endpoint}
    try:
        return {"client_id": client_id, "endpoint": egress.check_url(endpoint)}
    except EgressRefused as refused:
        raise InvalidCatalogEntry(f"provider endpoint: {refused}") from None


class Catalog:
    def __init__(
        self,
        db: Database,
        egress: EgressPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.egress = egress  # which provider endpoints may be registered (the SSRF guard)
        self.db = db
        self.clock = clock
        self._cache: dict[str, tuple[float, Item]] = {}

    async def put_item(self, tenant_id: str, item_id: str, entry: dict[str, Any]) -> Item:
        """Define or replace an item of this tenant; refuses another tenant's item."""
        if not ITEM_ID.match(item_id) or len(item_id) > 64:
            raise InvalidCatalogEntry("item id: dotted lower-case words, e.g. health.allergy")
        if entry.get("sensitivity") not in SENSITIVITIES:
            raise InvalidCatalogEntry(f"sensitivity: one of {', '.join(SENSITIVITIES)}")
        schema = entry.get("schema")
        if not isinstance(schema, dict) or len(repr(schema)) > MAX_SCHEMA_BYTES:
            raise InvalidCatalogEntry("schema: a JSON Schema object (at most 16 KiB)")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise InvalidCatalogEntry(f"schema: {error.message}") from error
        providers = entry.get("providers")
        if not isinstance(providers, list) or not 1 <= len(providers) <= 10:
            raise InvalidCatalogEntry("providers: 1 to 10")
        values = {
            "id": item_id,
            "tenant_id": tenant_id,
            "label_ja": entry["label_ja"],
            "label_en": entry["label_en"],
            "sensitivity": entry["sensitivity"],
            "schema": schema,
            "providers": [_check_provider(p, self.egress) for p in providers],
            "updated_at": self.clock(),
        }
        async with self.db.transaction() as session:
            if not await store.put_item(session, values):
                raise CatalogConflict(f"{item_id} is administered by another tenant")
        self._cache.pop(item_id, None)
        return _item(values)

    async def items(self, ids: list[str]) -> dict[str, Item]:
        """The catalog entries of ``ids``; :class:`UnknownItem` names the first missing one."""
        now = datetime.now(UTC).timestamp()
        found: dict[str, Item] = {}
        missing = []
        for item_id in ids:
            cached = self._cache.get(item_id)
            if cached is not None and cached[0] > now:
                found[item_id] = cached[1]
            else:
                missing.append(item_id)
        if missing:
            async with self.db.sessions() as session:
                rows = await store.items(session, missing)
            for row in rows:
                entry = _item(row)
                found[entry.id] = entry
                self._cache[entry.id] = (now + CACHE_S, entry)
        unknown = [item_id for item_id in ids if item_id not in found]
        if unknown:
            raise UnknownItem(f"not in the catalog: {unknown[0]}")
        return found

    async def all_items(self) -> list[Item]:
        async with self.db.sessions() as session:
            return [_item(row) for row in await store.items(session)]
