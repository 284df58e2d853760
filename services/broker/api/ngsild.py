"""NGSI-LD API subset (ETSI GS CIM 009 §6): entities, attributes, subscriptions; and the
operator's dataset definitions. Bodies are parsed here (not by pydantic) so every malformed one
gets an NGSI-LD problem type rather than a generic validation error."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.broker.api.deps import CATALOG_WRITE, optional_party_token, party_token, services
from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.errors import InvalidCatalogEntry
from tsunagu.broker.domain.ngsild import (
    CORE_CONTEXT,
    MAX_LIMIT,
    READ_SCOPE,
    BadRequestData,
    EntityQuery,
    GeoQuery,
    InvalidRequest,
    NgsiLdError,
    OperationNotSupported,
    TooManyResults,
    check_id_pattern,
    parse_geoquery,
    parse_q,
)
from tsunagu.service import get_runtime


class NeedsPostgres(NgsiLdError):
    code = "OperationNotSupported"
    title = "Non-personal data needs the broker on PostgreSQL"
    status = 501


async def _on_postgres(request: Request) -> None:
    """The NGSI-LD store uses JSONB and row locks: on SQLite (embedded mode) refuse cleanly."""
    if get_runtime(request).db.is_sqlite:
        raise NeedsPostgres("this broker runs on SQLite; NGSI-LD needs PostgreSQL")


router = APIRouter(tags=["ngsi-ld"], dependencies=[Depends(_on_postgres)])
BASE = "/ngsi-ld/v1"
TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
LINK = re.compile(r"^\s*<([^>]+)>\s*;(.*)$")
JSON_TYPES = ("application/json", "application/ld+json")
OPTIONS = ("keyValues", "normalized", "noOverwrite")


class UnsupportedMediaType(NgsiLdError):
    code = "InvalidRequest"
    title = "Send application/json or application/ld+json"
    status = 415


class NotAcceptable(NgsiLdError):
    code = "InvalidRequest"
    title = "This broker answers application/json or application/ld+json"
    status = 406


# -- @context (simplified: accepted, stored and echoed; never fetched or expanded) -------------


def _link_context(request: Request) -> str | None:
    header = request.headers.get("link")
    if header is None:
        return None
    match = LINK.match(header)
    if match is None or CONTEXT_REL not in match.group(2):
        raise BadRequestData('Link: <context URL>; rel="http://www.w3.org/ns/json-ld#context"')
    return match.group(1)


async def _body(request: Request) -> tuple[Any, Any]:
    """The JSON body and its @context: in the body for application/ld+json, in the Link header
    for application/json (§6.3.5)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {media or '(none)'} is not supported")
    try:
        document = json.loads(await request.body())
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    link = _link_context(request)
    if media == "application/ld+json":
        if link is not None:
            raise BadRequestData("application/ld+json carries its @context in the body, not a Link header")
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData("application/ld+json needs an @context member")
        return document, document["@context"]
    if isinstance(document, dict) and "@context" in document:
        raise BadRequestData("application/json carries its @context in a Link header, not the body")
    return document, link


def _wants_ld(request: Request) -> bool:
    accept = request.headers.get("accept", "*/*").lower()
    if "application/ld+json" in accept:
        return True
    if not any(kind in accept for kind in ("application/json", "application/*", "*/*")):
        raise NotAcceptable(f"Accept {accept[:100]} is not served")
    return False


def _link(context: Any) -> str:
    url = context if isinstance(context, str) else CORE_CONTEXT
    return f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'


def _json(
    request: Request, content: Any, context: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    headers = dict(headers or {})
    if _wants_ld(request):
        echo = context if context is not None else CORE_CONTEXT
        if isinstance(content, list):
            content = [{**entry, "@context": echo} for entry in content]
        else:
            content = {**content, "@context": echo}
        media = "application/ld+json"
    else:
        headers["Link"] = _link(context)
        media = "application/json"
    return Response(_encoded(content), status_code=status, media_type=media, headers=headers)


def _encoded(content: Any) -> bytes:
    """Compact UTF-8 JSON: orjson (a tenth of json.dumps' time, on every read), or json for what
    orjson refuses (integers beyond 64 bits, which JSONB keeps exactly)."""
    try:
        return orjson.dumps(content)
    except TypeError:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


# -- query parameters ---------------------------------------------------------------------------


def _list(request: Request, name: str) -> list[str] | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    items = [item for item in value.split(",") if item]
    if not items or len(items) > 100:
        raise BadRequestData(f"{name}: a comma-separated list of 1 to 100 names")
    return items


def _int(request: Request, name: str, default: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise BadRequestData(f"{name}: a non-negative integer")
    number = int(value)
    if name == "limit" and number > high:
        raise TooManyResults(f"limit: at most {high}")
    return number


def _options(request: Request) -> set[str]:
    options = set(_list(request, "options") or ())
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("keyValues", "simplified", "normalized"):
            raise BadRequestData("format: normalized, keyValues or simplified")
        options.add("keyValues" if fmt in ("keyValues", "simplified") else "normalized")
    options = {"keyValues" if o == "simplified" else o for o in options}
    unknown = options - set(OPTIONS)
    if unknown:
        raise OperationNotSupported(f"options: {sorted(unknown)[0]} is not supported")
    return options


def _pick(request: Request) -> frozenset[str] | None:
    attrs = _list(request, "attrs")
    return frozenset(attrs) if attrs is not None else None


def _entity_query(request: Request) -> EntityQuery:
    q = request.query_params.get("q")
    params = request.query_params
    id_pattern = params.get("idPattern")
    return EntityQuery(
        types=_list(request, "type"),
        ids=_list(request, "id"),
        id_pattern=check_id_pattern(id_pattern) if id_pattern is not None else None,
        attrs=_list(request, "attrs"),
        q=parse_q(q) if q is not None else None,
        geo=parse_geoquery(
            GeoQuery(
                params.get("georel"),
                params.get("geometry"),
                params.get("coordinates"),
                params.get("geoproperty"),
            )
        ),
        limit=_int(request, "limit", 20, MAX_LIMIT),
        offset=_int(request, "offset", 0, 10**9),
        count=params.get("count") == "true",
    )


# -- entities -----------------------------------------------------------------------------------


@router.post(f"{BASE}/entities", status_code=201)
async def create_entity(
    request: Request,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    """Create an entity (201, ``Location``); its type's dataset must list the caller as a writer."""
    document, context = await _body(request)
    entity_id = await broker.ngsild.create(caller, document, context)
    return Response(status_code=201, headers={"Location": f"{BASE}/entities/{entity_id}"})


@router.get(f"{BASE}/entities")
async def query_entities(
    request: Request,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    """Query entities by type, id, idPattern, attrs, q and geo-query, paged (limit, offset)."""
    query = _entity_query(request)
    options = _options(request)
    entities, total = await broker.ngsild.query(caller, query)
    pick, key_values = _pick(request), "keyValues" in options
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else None
    content = [entity.render(pick, key_values) for entity in entities]
    return _json(request, content, _link_context(request), headers=headers)


ENTITY = f"{BASE}/entities/{{entity_id}}"


async def _retrieve(
    request: Request, entity_id: str, caller: AccessToken | None, broker: BrokerServices
) -> Response:
    options = _options(request)
    entity = await broker.ngsild.get(caller, entity_id)
    return _json(request, entity.render(_pick(request), "keyValues" in options), entity.context)


@router.get(ENTITY)
async def retrieve_entity(
    entity_id: str,
    request: Request,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    """One entity (``attrs`` projection, ``options=keyValues``). The broker serves this endpoint
    before the routing (``fast_routes`` in ``api/__init__``): on the hot path of non-personal data
    FastAPI's routing and dependency solving cost more than the read itself."""
    return await _retrieve(request, entity_id, caller, broker)


@router.delete(f"{BASE}/entities/{{entity_id}}", status_code=204)
async def delete_entity(
    entity_id: str,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    await broker.ngsild.delete(caller, entity_id)
    return Response(status_code=204)


async def _change_attributes(
    request: Request, entity_id: str, caller: AccessToken | None, broker: BrokerServices, *, append: bool
) -> Response:
    fragment, _context = await _body(request)
    options = _options(request)
    not_changed = await broker.ngsild.update_attributes(
        caller, entity_id, fragment, append=append, overwrite="noOverwrite" not in options
    )
    if not not_changed:
        return Response(status_code=204)
    reason = "attribute exists (noOverwrite)" if append else "attribute does not exist"
    changed = [name for name in fragment if name != "@context" and name not in not_changed]
    result = {"updated": changed, "notUpdated": [{"attributeName": n, "reason": reason} for n in not_changed]}
    return Response(json.dumps(result), status_code=207, media_type="application/json")


@router.patch(f"{BASE}/entities/{{entity_id}}/attrs")
async def update_attributes(
    entity_id: str,
    request: Request,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    """Update existing attributes (204; 207 lists the ones the entity does not have)."""
    return await _change_attributes(request, entity_id, caller, broker, append=False)


@router.post(f"{BASE}/entities/{{entity_id}}/attrs")
async def append_attributes(
    entity_id: str,
    request: Request,
    caller: AccessToken | None = Depends(optional_party_token),
    broker: BrokerServices = Depends(services),
) -> Response:
    """Append attributes, replacing existing ones unless ``options=noOverwrite``."""
    return await _change_attributes(request, entity_id, caller, broker, append=True)


# -- subscriptions ------------------------------------------------------------------------------


@router.post(f"{BASE}/subscriptions", status_code=201)
async def create_subscription(
    request: Request,
    caller: AccessToken = Depends(party_token(READ_SCOPE)),
    broker: BrokerServices = Depends(services),
) -> Response:
    document, _context = await _body(request)
    subscription_id = await broker.ngsild.subscriptions.create(caller, document)
    return Response(status_code=201, headers={"Location": f"{BASE}/subscriptions/{subscription_id}"})


@router.get(f"{BASE}/subscriptions")
async def list_subscriptions(
    request: Request,
    caller: AccessToken = Depends(party_token(READ_SCOPE)),
    broker: BrokerServices = Depends(services),
) -> Response:
    limit = _int(request, "limit", 20, MAX_LIMIT)
    offset = _int(request, "offset", 0, 10**9)
    found, total = await broker.ngsild.subscriptions.of(caller, limit=limit, offset=offset)
    headers = {"NGSILD-Results-Count": str(total)} if request.query_params.get("count") == "true" else None
    return _json(request, found, None, headers=headers)


@router.get(f"{BASE}/subscriptions/{{subscription_id}}")
async def retrieve_subscription(
    subscription_id: str,
    request: Request,
    caller: AccessToken = Depends(party_token(READ_SCOPE)),
    broker: BrokerServices = Depends(services),
) -> Response:
    return _json(request, await broker.ngsild.subscriptions.get(caller, subscription_id), None)


@router.delete(f"{BASE}/subscriptions/{{subscription_id}}", status_code=204)
async def delete_subscription(
    subscription_id: str,
    caller: AccessToken = Depends(party_token(READ_SCOPE)),
    broker: BrokerServices = Depends(services),
) -> Response:
    await broker.ngsild.subscriptions.delete(caller, subscription_id)
    return Response(status_code=204)


# -- datasets (operator) ------------------------------------------------------------------------


class DatasetDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_ja: str = Field(min_length=1, max_length=200)
    label_en: str = Field(min_length=1, max_length=200)
    entity_types: list[str] = Field(min_length=1, max_length=100)
    access: str | list[str] = Field(description='"public" or the client ids that may read')
    writers: list[str] = Field(default_factory=list, max_length=100)


@router.put("/internal/v1/tenants/{tenant_id}/datasets/{dataset_id}", tags=["catalog"])
async def put_dataset(
    tenant_id: str,
    dataset_id: str,
    definition: DatasetDefinition,
    _operator: ServicePrincipal = Depends(require_permission(CATALOG_WRITE)),
    broker: BrokerServices = Depends(services),
) -> dict[str, Any]:
    """Define or replace a dataset of non-personal data of this tenant."""
    if not TENANT.match(tenant_id):
        raise InvalidCatalogEntry("tenant id: a slug")
    if isinstance(definition.access, str) and definition.access != "public":
        raise InvalidCatalogEntry('access: "public" or a list of client ids')
    dataset = await broker.ngsild.datasets.put(tenant_id, dataset_id, definition.model_dump())
    return dataset.view()
