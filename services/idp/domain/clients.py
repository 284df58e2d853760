"""Tenants and clients: RFC 7591 metadata, registration (admin API, RFC 7591 with a tenant's
initial access token, RFC 7592 management with the registration access token), the pairwise
sector of each client and its public keys.

Metadata is validated strictly by :class:`ClientMetadata` and kept as validated (unknown members
are dropped, as RFC 7591 §2 lets a server ignore what it does not understand). Secrets — client
secrets, initial and registration access tokens — are random, handed out once and stored as
SHA-256 only; they are compared with :func:`hmac.compare_digest`.

``sector_identifier_uri`` is honoured by its host only: the document behind it is **not** fetched
and its list of redirect URIs not checked (OIDC Registration §5). Whoever registers (an operator
or a tenant with its initial access token) vouches for the sector; a relying party cannot move
itself into another one later, because a change of sector is refused on update.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import IntegrityError

from tsunagu.db import Database
from tsunagu.errors import Conflict
from tsunagu.events.outbox import Outbox
from tsunagu.events.schemas.idp import ClientDeletedV1, ClientRegisteredV1, ClientUpdatedV1
from tsunagu.idp.domain.errors import ClientNotFound, InvalidClientMetadata, TenantExists, TenantNotFound
from tsunagu.idp.domain.opaque import new_secret, token_hash
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.clients import ClientRecord, ClientStore, TenantRecord
from tsunagu.service.egress import EgressPolicy, EgressRefused, egress_policy

log = logging.getLogger(__name__)

CIBA_GRANT = "urn:openid:params:grant-type:ciba"
GrantType = Literal[
    "authorization_code", "refresh_token", "client_credentials", "urn:openid:params:grant-type:ciba"
]
AuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
SigningAlg = Literal["ES256", "RS256", "PS256", "EdDSA"]
_CODE_GRANT: list[GrantType] = ["authorization_code"]
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_SCOPE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$")
_APP_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_URI_LENGTH = 2000
MAX_JWKS_BYTES = 65_536
MAX_KEYS = 16
CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000
JWKS_TTL_S = 300.0
JWKS_TIMEOUT_S = 5.0
JWKS_MIN_REFETCH_S = 10.0


# --- errors ---------------------------------------------------------------------------------


class MetadataRejected(InvalidClientMetadata):
    """Refused metadata; ``oauth_error`` is the RFC 7591 §3.2.2 code registration answers with."""

    def __init__(
        self, detail: str, oauth_error: Literal["invalid_client_metadata", "invalid_redirect_uri"]
    ) -> None:
        super().__init__(detail)
        self.oauth_error = oauth_error


def metadata_rejected(detail: str, *, redirect: bool = False) -> MetadataRejected:
    return MetadataRejected(detail, "invalid_redirect_uri" if redirect else "invalid_client_metadata")


class ClientHasNoSecret(Conflict):
    code = "client-has-no-secret"
    title = "The client does not authenticate with a secret"


class JwksUnavailable(Exception):
    """The client's ``jwks_uri`` could not be fetched or did not hold a public JWK set."""


# --- metadata -------------------------------------------------------------------------------


def _loopback_http_allowed(info: ValidationInfo) -> bool:
    context = info.context if isinstance(info.context, dict) else {}
    return bool(context.get("loopback_http", False))


def check_url(value: str, *, loopback_http: bool) -> str:
    """An absolute ``https`` URL (``http`` only on a loopback host when allowed), without a
    fragment or user info; kept exactly as given."""
    if len(value) > MAX_URI_LENGTH or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("not a usable URL (too long, or spaces/control characters)")
    parts = urlsplit(value)
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("the URL's port is not valid") from None
    if not host:
        raise ValueError("an absolute URL with a host is required")
    if parts.scheme == "http":
        if not (loopback_http and host in LOOPBACK_HOSTS):
            raise ValueError("https is required (http only on 127.0.0.1, [::1] or localhost)")
    elif parts.scheme != "https":
        raise ValueError("https is required")
    if "#" in value:
        raise ValueError("a fragment is not allowed")
    if parts.username is not None or parts.password is not None:
        raise ValueError("user info is not allowed in the URL")
    return value


def _check_jwk(key: Any, kids: set[str]) -> None:
    if not isinstance(key, dict):
        raise ValueError("each key is a JSON object")
    if _PRIVATE_JWK_MEMBERS & key.keys():
        raise ValueError("the JWK set must hold public keys only (private or symmetric members found)")
    kty, crv = key.get("kty"), key.get("crv")
    if not (kty == "RSA" or (kty == "EC" and crv == "P-256") or (kty == "OKP" and crv == "Ed25519")):
        raise ValueError("keys must be EC P-256, RSA or OKP Ed25519")
    if key.get("use", "sig") != "sig":
        raise ValueError("keys must be signing keys (use 'sig')")
    if "alg" in key and key["alg"] not in ("ES256", "RS256", "PS256", "EdDSA"):
        raise ValueError("a key's alg must be ES256, RS256, PS256 or EdDSA")
    kid = key.get("kid")
    if kid is not None:
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise ValueError("kid must be a string of at most 128 characters")
        if kid in kids:
            raise ValueError("kid values must be unique")
        kids.add(kid)


def check_public_jwks(value: Any) -> dict[str, Any]:
    """A JWK set of public signing keys (EC P-256, RSA ≥ 2048, Ed25519) that joserfc imports."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise ValueError("a JWK set is an object with a 'keys' array")
    keys = value["keys"]
    if not 0 < len(keys) <= MAX_KEYS:
        raise ValueError(f"the JWK set must hold 1 to {MAX_KEYS} keys")
    if len(json.dumps(value)) > MAX_JWKS_BYTES:
        raise ValueError("the JWK set is too large")
    kids: set[str] = set()
    for key in keys:
        _check_jwk(key, kids)
    try:
        imported = KeySet.import_key_set(cast(Any, value))
    except (JoseError, ValueError, TypeError, KeyError, AttributeError):
        raise ValueError("the JWK set does not parse") from None
    for jwk in imported.keys:
        if jwk.key_type == "RSA" and getattr(jwk.raw_value, "key_size", 0) < 2048:
            raise ValueError("RSA keys must have at least 2048 bits")
    return value


class ClientMetadata(BaseModel):
    """RFC 7591 client metadata as Tsunagu accepts it (plus OIDC Registration, PAR, DPoP,
    Back-Channel Logout, RP-Initiated Logout, CIBA and RFC 9396 members, and ``tsunagu_app_id``).

    Validate with ``ClientMetadata.model_validate(data, context={"loopback_http": bool})``;
    ``loopback_http`` allows ``http`` loopback URLs for what the idp itself calls or shows
    (``jwks_uri``, logout and notification endpoints, logo/policy/tos) — never in production.
    Redirect URIs may always be loopback ``http`` (RFC 8252 native apps).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, strict=True)

    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    response_types: list[Literal["code"]] = Field(default_factory=list)
    grant_types: list[GrantType] = Field(default_factory=_CODE_GRANT.copy, min_length=1)
    token_endpoint_auth_method: AuthMethod = "private_key_jwt"  # noqa: S105 - a method name
    token_endpoint_auth_signing_alg: SigningAlg | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    client_name: str | None = Field(default=None, min_length=1, max_length=200)
    client_name_ja: str | None = Field(default=None, alias="client_name#ja", min_length=1, max_length=200)
    client_name_en: str | None = Field(default=None, alias="client_name#en", min_length=1, max_length=200)
    client_uri: str | None = None
    logo_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None
    contacts: list[str] = Field(default_factory=list, max_length=10)
    software_id: str | None = Field(default=None, max_length=200)
    software_version: str | None = Field(default=None, max_length=200)
    subject_type: Literal["pairwise"] = "pairwise"
    id_token_signed_response_alg: Literal["ES256", "RS256"] = "ES256"  # noqa: S105 - an alg name
    request_object_signing_alg: SigningAlg | None = None
    require_pushed_authorization_requests: bool = False
    dpop_bound_access_tokens: bool = False
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    backchannel_token_delivery_mode: Literal["poll", "ping"] | None = None
    backchannel_client_notification_endpoint: str | None = None
    sector_identifier_uri: str | None = None
    authorization_details_types: list[Literal["tsunagu_data_access"]] = Field(default_factory=list)
    scope: str | None = Field(default=None, max_length=1000)
    tsunagu_app_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_response_types(cls, data: Any) -> Any:
        """RFC 7591 §2: ``response_types`` defaults to ``["code"]`` — for clients that use the
        code grant; a client without it has none."""
        if isinstance(data, dict) and "response_types" not in data:
            grants = data.get("grant_types", ["authorization_code"])
            uses_code = isinstance(grants, list) and "authorization_code" in grants
            return {**data, "response_types": ["code"] if uses_code else []}
        return data

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def _redirects(cls, value: list[str]) -> list[str]:
        for uri in value:
            check_url(uri, loopback_http=True)
        if len(set(value)) != len(value):
            raise ValueError("duplicate URIs")
        return value

    @field_validator(
        "jwks_uri",
        "client_uri",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "backchannel_logout_uri",
        "backchannel_client_notification_endpoint",
        "sector_identifier_uri",
    )
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return check_url(value, loopback_http=_loopback_http_allowed(info))

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_public_jwks(value)

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(c) <= 254 or not c.isprintable() for c in value):
            raise ValueError("contacts are non-empty strings of at most 254 characters")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | None) -> str | None:
        if value is not None and not _SCOPE.match(value):
            raise ValueError("scope is a space-separated list of scope tokens")
        return value

    @field_validator("tsunagu_app_id")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        if value is not None and not _APP_ID.match(value):
            raise ValueError("tsunagu_app_id is 1 to 64 characters of A-Z a-z 0-9 . _ -")
        return value

    @model_validator(mode="after")
    def _coherent_grants(self) -> ClientMetadata:
        grants = set(self.grant_types)
        if len(grants) != len(self.grant_types) or len(set(self.response_types)) != len(self.response_types):
            raise ValueError("grant_types and response_types must not repeat values")
        if ("authorization_code" in grants) != ("code" in self.response_types):
            raise ValueError("response_types ['code'] goes with grant type authorization_code, only with it")
        if "authorization_code" in grants and not self.redirect_uris:
            raise PydanticCustomError(
                "invalid_redirect_uri", "redirect_uris are required for the authorization_code grant"
            )
        if "refresh_token" in grants and not grants & {"authorization_code", CIBA_GRANT}:
            raise ValueError("refresh_token goes with authorization_code or CIBA")
        if CIBA_GRANT in grants:
            if self.backchannel_token_delivery_mode is None:
                raise ValueError("CIBA clients need backchannel_token_delivery_mode (poll or ping)")
            ping = self.backchannel_token_delivery_mode == "ping"  # noqa: S105 - a mode, not a secret
            if ping != (self.backchannel_client_notification_endpoint is not None):
                raise ValueError("backchannel_client_notification_endpoint is required for ping, only for it")
        elif self.backchannel_token_delivery_mode or self.backchannel_client_notification_endpoint:
            raise ValueError("backchannel_token_delivery_mode needs the CIBA grant type")
        if self.backchannel_logout_session_required and self.backchannel_logout_uri is None:
            raise ValueError("backchannel_logout_session_required needs backchannel_logout_uri")
        return self

    @model_validator(mode="after")
    def _coherent_authentication(self) -> ClientMetadata:
        method = self.token_endpoint_auth_method
        if method == "none" and set(self.grant_types) & {"client_credentials", CIBA_GRANT}:
            raise ValueError("public clients (auth method none) cannot use client_credentials or CIBA")
        if self.jwks is not None and self.jwks_uri is not None:
            raise ValueError("jwks and jwks_uri are mutually exclusive")
        has_keys = self.jwks is not None or self.jwks_uri is not None
        if method == "private_key_jwt" and not has_keys:
            raise ValueError("private_key_jwt needs jwks or jwks_uri")
        if self.token_endpoint_auth_signing_alg is not None and method != "private_key_jwt":
            raise ValueError("token_endpoint_auth_signing_alg goes with private_key_jwt")
        if self.request_object_signing_alg is not None and not has_keys:
            raise ValueError("request_object_signing_alg needs jwks or jwks_uri")
        return self

    def registered(self) -> dict[str, Any]:
        """The metadata as registered (JSON, language-tagged names under their RFC 7591 names)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# The metadata URLs the idp itself calls (the rest are only shown or compared): each must name an
# address the egress policy allows — the SSRF guard (tsunagu.service.egress).
CALLED_URLS = ("jwks_uri", "backchannel_logout_uri", "backchannel_client_notification_endpoint")


def check_called_urls(metadata: ClientMetadata, egress: EgressPolicy) -> ClientMetadata:
    """:class:`MetadataRejected` when a URL the idp would call names a forbidden address."""
    for name in CALLED_URLS:
        value = getattr(metadata, name)
        if value is None:
            continue
        try:
            egress.check_url(value)
        except EgressRefused as refused:
            raise metadata_rejected(f"{name}: {refused}", redirect=False) from None
    return metadata


def validate_metadata(data: Mapping[str, Any], *, loopback_http: bool) -> ClientMetadata:
    """``data`` as :class:`ClientMetadata`, or :class:`MetadataRejected` saying what is wrong."""
    try:
        return ClientMetadata.model_validate(dict(data), context={"loopback_http": loopback_http})
    except ValidationError as error:
        problems, redirect = [], False
        for item in error.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in item["loc"]) or "metadata"
            problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
            redirect = (
                redirect or item["type"] == "invalid_redirect_uri" or item["loc"][:1] == ("redirect_uris",)
            )
        raise metadata_rejected("; ".join(problems)[:1000], redirect=redirect) from None


def sector_identifier(metadata: ClientMetadata, client_id: str) -> str:
    """The pairwise sector: host of ``sector_identifier_uri``, else the one host of the redirect
    URIs, else (service clients without redirect URIs) the client id."""
    if metadata.sector_identifier_uri is not None:
        return str(urlsplit(metadata.sector_identifier_uri).hostname)
    hosts = {str(urlsplit(uri).hostname) for uri in metadata.redirect_uris}
    if len(hosts) > 1:
        raise metadata_rejected("redirect_uris span several hosts: register a sector_identifier_uri")
    return hosts.pop() if hosts else client_id


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant_id: str
    tenant_name_ja: str
    tenant_name_en: str
    metadata: ClientMetadata
    token_endpoint_auth_method: str
    sector_identifier: str
    user_number_legal_basis: str | None
    state: str  # active | disabled
    created_at: datetime | None = field(default=None, compare=False)

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.metadata.redirect_uris)

    @property
    def grant_types(self) -> list[str]:
        return list(self.metadata.grant_types)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"  # noqa: S105 - a method name

    @property
    def require_par(self) -> bool:
        return self.metadata.require_pushed_authorization_requests

    @property
    def dpop_bound(self) -> bool:
        return self.metadata.dpop_bound_access_tokens

    @property
    def backchannel_logout_uri(self) -> str | None:
        return self.metadata.backchannel_logout_uri

    @property
    def post_logout_redirect_uris(self) -> list[str]:
        return list(self.metadata.post_logout_redirect_uris)

    @property
    def app_id(self) -> str | None:
        return self.metadata.tsunagu_app_id

    @property
    def id_token_alg(self) -> str:
        return self.metadata.id_token_signed_response_alg

    @property
    def ciba_mode(self) -> str | None:
        return self.metadata.backchannel_token_delivery_mode

    @property
    def ciba_notification_endpoint(self) -> str | None:
        return self.metadata.backchannel_client_notification_endpoint

    @property
    def active(self) -> bool:
        return self.state == "active"

    def display_name(self, locale: str) -> str:
        """The client's name for ``locale`` (``ja``, ``en``, ``ja-JP`` …), falling back to the
        untagged name, the other language, and finally the client id."""
        language = locale.split("-", 1)[0].lower()
        tagged = {"ja": self.metadata.client_name_ja, "en": self.metadata.client_name_en}
        for name in (tagged.get(language), self.metadata.client_name, *tagged.values()):
            if name:
                return name
        return self.client_id


@dataclass(frozen=True)
class Tenant:
    id: str
    name_ja: str
    name_en: str
    state: str
    created_at: datetime


@dataclass(frozen=True)
class Actor:
    """Who changes a client: an operator (admin API), a tenant (RFC 7591) or the client (RFC 7592)."""

    kind: Literal["operator", "tenant", "client"]
    id: str | None = None


@dataclass(frozen=True)
class IssuedClient:
    """A client with the credentials handed out by this operation (each shown once)."""

    client: Client
    issued_at: datetime
    client_secret: str | None = None
    registration_access_token: str | None = None


class _Keep:
    """Marker: leave the legal basis as it is."""


KEEP = _Keep()


@dataclass(frozen=True)
class _Entry:
    client: Client
    secret_hash: str | None
    secret_expires_at: datetime | None


def new_client_id() -> str:
    return secrets.token_urlsafe(16)  # 22 characters


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _client(record: ClientRecord) -> Client:
    return Client(
        client_id=record.client_id,
        tenant_id=record.tenant_id,
        tenant_name_ja=record.tenant_name_ja,
        tenant_name_en=record.tenant_name_en,
        metadata=ClientMetadata.model_validate(record.metadata, context={"loopback_http": True}),
        token_endpoint_auth_method=record.token_endpoint_auth_method,
        sector_identifier=record.sector_identifier,
        user_number_legal_basis=record.user_number_legal_basis,
        # a client of a disabled tenant is as good as disabled
        state=record.state if record.tenant_state == "active" else "disabled",
        created_at=record.created_at,
    )


def _tenant(record: TenantRecord) -> Tenant:
    return Tenant(record.id, record.name_ja, record.name_en, record.state, record.created_at)


def _check_legal_basis(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= 1000:
        raise metadata_rejected("user_number_legal_basis is a non-empty text of at most 1000 characters")
    return value


class ClientRegistry:
    """Tenants and clients: registration, management, look-up (cached) and public keys."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        settings: IdpSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.settings = settings
        self.clock = clock
        self.loopback_http = settings.environment != "production"
        self.egress = egress_policy(settings)
        self._http = http or httpx.AsyncClient(
            timeout=JWKS_TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
            transport=self.egress.httpx_transport(),
        )
        self._owns_http = http is None
        self._cache: dict[str, tuple[float, _Entry]] = {}
        # (client_id, jwks_uri) → (expires at, last refetch for an unknown kid, JWK set)
        self._jwks: dict[tuple[str, str], tuple[float, float | None, dict[str, Any]]] = {}
        self._jwks_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def forget(self, client_id: str) -> None:
        """Drop what this instance remembers of a client (after a local change)."""
        self._cache.pop(client_id, None)
        for key in [key for key in self._jwks if key[0] == client_id]:
            self._jwks.pop(key, None)

    # -- look-up --------------------------------------------------------------------------------

    async def _entry(self, client_id: str) -> _Entry | None:
        if not 0 < len(client_id) <= 64:
            return None
        now = time.monotonic()
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.db.sessions() as session:
            record = await ClientStore(session).client(client_id)
        if record is None:
            return None
        entry = _Entry(_client(record), record.client_secret_hash, record.client_secret_expires_at)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[client_id] = (now + CACHE_TTL_S, entry)
        return entry

    async def get(self, client_id: str) -> Client | None:
        """The **active** client (of an active tenant), or None — unknown and disabled clients
        alike. Cached for at most 5 s (changes made through this instance are seen at once)."""
        entry = await self._entry(client_id)
        return entry.client if entry is not None and entry.client.active else None

    async def load(self, client_id: str) -> Client:
        """Any client, disabled ones too (admin); :class:`ClientNotFound` if there is none."""
        async with self.db.sessions() as session:
            record = await ClientStore(session).client(client_id)
        if record is None:
            raise ClientNotFound(f"no client {client_id}")
        return _client(record)

    async def verify_secret(self, client: Client, secret: str) -> bool:
        """Whether ``secret`` is the client's current, unexpired secret (constant-time compare)."""
        entry = await self._entry(client.client_id)
        stored = entry.secret_hash if entry is not None else None
        matches = hmac.compare_digest(token_hash(secret), stored or "0" * 64)
        if stored is None or entry is None or not entry.client.active:
            return False
        expires = entry.secret_expires_at
        return matches and (expires is None or expires > self.clock())

    # -- public keys ----------------------------------------------------------------------------

    async def jwks(self, client: Client, *, refresh: bool = False) -> dict[str, Any]:
        """The client's public JWK set: inline, or fetched from ``jwks_uri`` (cached 5 min).
        ``refresh`` (an unknown ``kid``: the client may have rotated its keys) refetches, but at
        most once every 10 s per client, so unknown kids cannot make us hammer the client."""
        if client.metadata.jwks is not None:
            return client.metadata.jwks
        uri = client.metadata.jwks_uri
        if uri is None:
            return {"keys": []}
        key = (client.client_id, uri)
        cached = self._jwks.get(key)
        if cached is not None and self._fresh(cached, refresh):
            return cached[2]
        async with self._jwks_locks.setdefault(key, asyncio.Lock()):
            again = self._jwks.get(key)
            if again is not None and again is not cached and self._fresh(again, refresh):
                return again[2]  # fetched while we waited
            try:
                document = await self._fetch_jwks(uri)
            except JwksUnavailable:
                if cached is not None and cached[0] > time.monotonic():
                    return cached[2]
                raise
            now = time.monotonic()
            forced = now if refresh else (cached[1] if cached is not None else None)
            if len(self._jwks) >= CACHE_MAX_ENTRIES:
                self._jwks.clear()
            self._jwks[key] = (now + JWKS_TTL_S, forced, document)
        return document

    @staticmethod
    def _fresh(entry: tuple[float, float | None, dict[str, Any]], refresh: bool) -> bool:
        now = time.monotonic()
        if refresh:
            return entry[1] is not None and now - entry[1] < JWKS_MIN_REFETCH_S
        return entry[0] > now

    async def _fetch_jwks(self, uri: str) -> dict[str, Any]:
        try:
            check_url(uri, loopback_http=self.loopback_http)
            self.egress.check_url(uri)
        except ValueError as error:  # EgressRefused is a ValueError
            raise JwksUnavailable(str(error)) from None
        try:
            async with self._http.stream("GET", uri, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"jwks_uri answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable("jwks_uri answered more than 64 KiB")
        except httpx.HTTPError as error:
            raise JwksUnavailable(f"jwks_uri unreachable ({type(error).__name__})") from None
        try:
            return check_public_jwks(json.loads(body))
        except ValueError as error:
            raise JwksUnavailable(f"jwks_uri does not hold a public JWK set: {error}") from None

    # -- tenants --------------------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name_ja: str, name_en: str) -> tuple[Tenant, str]:
        """A new tenant and its initial access token (returned once; only its hash is kept)."""
        token, now = new_secret(), self.clock()
        try:
            async with self.db.transaction() as session:
                store = ClientStore(session)
                if await store.tenant(tenant_id) is not None:
                    raise TenantExists(f"tenant {tenant_id} exists")
                await store.add_tenant(
                    id=tenant_id,
                    name_ja=name_ja,
                    name_en=name_en,
                    token_hash=token_hash(token),
                    created_at=now,
                )
        except IntegrityError:
            raise TenantExists(f"tenant {tenant_id} exists") from None
        log.info("tenant created", extra={"tenant_id": tenant_id})
        return Tenant(tenant_id, name_ja, name_en, "active", now), token

    async def tenant(self, tenant_id: str) -> Tenant:
        async with self.db.sessions() as session:
            record = await ClientStore(session).tenant(tenant_id)
        if record is None:
            raise TenantNotFound(f"no tenant {tenant_id}")
        return _tenant(record)

    async def rotate_initial_access_token(self, tenant_id: str) -> str:
        """A new initial access token for the tenant; the previous one stops working."""
        token = new_secret()
        async with self.db.transaction() as session:
            if not await ClientStore(session).set_tenant_token_hash(tenant_id, token_hash(token)):
                raise TenantNotFound(f"no tenant {tenant_id}")
        log.info("initial access token rotated", extra={"tenant_id": tenant_id})
        return token

    async def tenant_for_initial_access_token(self, token: str) -> Tenant | None:
        """The active tenant whose initial access token this is (looked up by its hash)."""
        if not 0 < len(token) <= 512:
            return None
        async with self.db.sessions() as session:
            record = await ClientStore(session).tenant_by_token_hash(token_hash(token))
        if record is None or record.state != "active" or record.initial_access_token_hash is None:
            return None
        if not hmac.compare_digest(record.initial_access_token_hash, token_hash(token)):
            return None
        return _tenant(record)

    # -- clients --------------------------------------------------------------------------------

    async def register(
        self,
        tenant_id: str,
        data: Mapping[str, Any],
        actor: Actor,
        *,
        user_number_legal_basis: str | None = None,
        registration_token: bool = False,
    ) -> IssuedClient:
        """Validate ``data`` and register a client under the tenant; ClientRegisteredV1 in the
        same transaction. A secret is issued for secret-based methods; a registration access
        token (RFC 7592) when ``registration_token``."""
        metadata = check_called_urls(validate_metadata(data, loopback_http=self.loopback_http), self.egress)
        legal_basis = _check_legal_basis(user_number_legal_basis)
        client_id, now = new_client_id(), self.clock()
        sector = sector_identifier(metadata, client_id)
        secret = new_secret() if metadata.token_endpoint_auth_method in SECRET_METHODS else None
        access = new_secret() if registration_token else None
        async with self.db.transaction() as session:
            store = ClientStore(session)
            tenant = await store.tenant(tenant_id)
            if tenant is None:
                raise TenantNotFound(f"no tenant {tenant_id}")
            await store.add_client(
                client_id=client_id,
                tenant_id=tenant_id,
                token_endpoint_auth_method=metadata.token_endpoint_auth_method,
                client_secret_hash=token_hash(secret) if secret else None,
                client_secret_expires_at=None,
                registration_access_token_hash=token_hash(access) if access else None,
                sector_identifier=sector,
                user_number_legal_basis=legal_basis,
                metadata_json=metadata.registered(),
                state="active",
                created_at=now,
                updated_at=now,
            )
            await self.outbox.add(
                session,
                ClientRegisteredV1(
                    client_id=client_id,
                    tenant_id=tenant_id,
                    actor=actor.kind,
                    actor_id=actor.id,
                    at=now,
                    metadata=metadata.registered(),
                    sector_identifier=sector,
                ),
            )
        log.info(
            "client registered", extra={"client_id": client_id, "tenant_id": tenant_id, "actor": actor.kind}
        )
        client = Client(
            client_id,
            tenant_id,
            tenant.name_ja,
            tenant.name_en,
            metadata,
            metadata.token_endpoint_auth_method,
            sector,
            legal_basis,
            "active",
            now,
        )
        return IssuedClient(client, now, secret, access)

    async def update(
        self,
        client_id: str,
        data: Mapping[str, Any],
        actor: Actor,
        *,
        user_number_legal_basis: str | _Keep | None = KEEP,
    ) -> IssuedClient:
        """Replace the client's metadata with ``data`` (validated as at registration); the sector
        cannot change. A client moving to a secret-based method gets a secret (returned once);
        one moving away loses it. ClientUpdatedV1 in the same transaction."""
        metadata = check_called_urls(validate_metadata(data, loopback_http=self.loopback_http), self.egress)
        if not isinstance(user_number_legal_basis, _Keep):
            user_number_legal_basis = _check_legal_basis(user_number_legal_basis)
        now = self.clock()
        secret: str | None = None
        async with self.db.transaction() as session:
            store = ClientStore(session)
            record = await store.client(client_id, for_update=True)
            if record is None or record.state != "active":
                raise ClientNotFound(f"no active client {client_id}")
            sector = sector_identifier(metadata, client_id)
            if sector != record.sector_identifier:
                raise metadata_rejected(
                    f"the pairwise sector would change from {record.sector_identifier} to {sector}; "
                    "keep the redirect URI host or the sector_identifier_uri"
                )
            method = metadata.token_endpoint_auth_method
            values: dict[str, Any] = {
                "token_endpoint_auth_method": method,
                "metadata_json": metadata.registered(),
                "updated_at": now,
            }
            if method in SECRET_METHODS and record.client_secret_hash is None:
                secret = new_secret()
                values["client_secret_hash"] = token_hash(secret)
            elif method not in SECRET_METHODS:
                values["client_secret_hash"] = None
                values["client_secret_expires_at"] = None
            if not isinstance(user_number_legal_basis, _Keep):
                values["user_number_legal_basis"] = user_number_legal_basis
            await store.update_client(client_id, **values)
            await self.outbox.add(
                session,
                ClientUpdatedV1(
                    client_id=client_id,
                    tenant_id=record.tenant_id,
                    actor=actor.kind,
                    actor_id=actor.id,
                    at=now,
                    metadata=metadata.registered(),
                    secret_rotated=secret is not None,
                    sector_identifier=record.sector_identifier,
                ),
            )
        self.forget(client_id)
        log.info("client updated", extra={"client_id": client_id, "actor": actor.kind})
        return IssuedClient(await self.load(client_id), now, secret)

    async def patch(self, client_id: str, changes: Mapping[str, Any], actor: Actor) -> IssuedClient:
        """Admin PATCH: a JSON merge patch (RFC 7396) of the registered metadata; a member set
        to null is removed. ``user_number_legal_basis`` may be set or cleared here."""
        current = await self.load(client_id)
        merged = current.metadata.registered()
        legal: str | _Keep | None = KEEP
        for name, value in changes.items():
            if name == "user_number_legal_basis":
                legal = cast(str | None, value)
            elif value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if "response_types" not in changes and "grant_types" in changes:
            merged.pop("response_types", None)  # recomputed from the new grant types
        return await self.update(client_id, merged, actor, user_number_legal_basis=legal)

    async def disable(self, client_id: str, actor: Actor) -> None:
        """Deletion: the client is disabled (its rows stay for audit) and fails authentication;
        its registration access token and secret stop working. ClientDeletedV1 in the same
        transaction."""
        now = self.clock()
        async with self.db.transaction() as session:
            store = ClientStore(session)
            record = await store.client(client_id, for_update=True)
            if record is None or record.state != "active":
                raise ClientNotFound(f"no active client {client_id}")
            await store.update_client(
                client_id,
                state="disabled",
                client_secret_hash=None,
                registration_access_token_hash=None,
                updated_at=now,
            )
            await self.outbox.add(
                session,
                ClientDeletedV1(
                    client_id=client_id,
                    tenant_id=record.tenant_id,
                    actor=actor.kind,
                    actor_id=actor.id,
                    at=now,
                ),
            )
        self.forget(client_id)
        log.info("client disabled", extra={"client_id": client_id, "actor": actor.kind})

    async def rotate_secret(self, client_id: str, actor: Actor) -> IssuedClient:
        """A new secret for a client that authenticates with one; the old one stops working."""
        secret, now = new_secret(), self.clock()
        async with self.db.transaction() as session:
            store = ClientStore(session)
            record = await store.client(client_id, for_update=True)
            if record is None or record.state != "active":
                raise ClientNotFound(f"no active client {client_id}")
            if record.token_endpoint_auth_method not in SECRET_METHODS:
                raise ClientHasNoSecret(
                    f"the client authenticates with {record.token_endpoint_auth_method}, not a secret"
                )
            await store.update_client(
                client_id,
                client_secret_hash=token_hash(secret),
                client_secret_expires_at=None,
                updated_at=now,
            )
            await self.outbox.add(
                session,
                ClientUpdatedV1(
                    client_id=client_id,
                    tenant_id=record.tenant_id,
                    actor=actor.kind,
                    actor_id=actor.id,
                    at=now,
                    metadata=record.metadata,
                    secret_rotated=True,
                    sector_identifier=record.sector_identifier,
                ),
            )
        self.forget(client_id)
        log.info("client secret rotated", extra={"client_id": client_id, "actor": actor.kind})
        return IssuedClient(_client(record), now, secret)

    async def client_for_registration_token(self, client_id: str, token: str) -> Client | None:
        """The active client this registration access token manages (RFC 7592), else None."""
        if not 0 < len(client_id) <= 64 or not 0 < len(token) <= 512:
            return None
        async with self.db.sessions() as session:
            record = await ClientStore(session).client(client_id)
        stored = record.registration_access_token_hash if record is not None else None
        matches = hmac.compare_digest(token_hash(token), stored or "0" * 64)
        if record is None or stored is None or not matches:
            return None
        client = _client(record)
        return client if client.active else None
