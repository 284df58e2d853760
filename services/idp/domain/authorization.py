"""Authorization requests: plain, signed (JAR, RFC 9101) or pushed (PAR, RFC 9126).

:meth:`AuthorizationRequests.parse` turns what the browser brought into a validated
:class:`AuthorizationRequest` or raises:
- :class:`AuthorizationError` without a redirect URI (unknown client, redirect URI not registered,
  broken request object) → an error page: never redirect to a URI we have not verified;
- :class:`AuthorizationError` with the redirect URI → RFC 6749 §4.1.2.1 redirect with ``state`` and
  ``iss`` (RFC 9207).

A pushed request is validated when pushed (same rules, client authenticated) and stored; the
browser then brings only ``client_id`` + ``request_uri``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tsunagu.idp.domain.data_access import CatalogUnavailable, DetailsInvalid
from tsunagu.idp.domain.errors import AuthorizationError, OAuthError, invalid_request
from tsunagu.idp.domain.opaque import new_secret, token_hash
from tsunagu.idp.store import logins as store

PAR_URN = "urn:ietf:params:oauth:request_uri:"
ACR_PROOFED = "urn:tsunagu:acr:jpki-proofed"
ACR_VALUES = (ACR_PROOFED,)
SCOPES = frozenset({"openid", "profile", "address", "offline_access", "user_number"})
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
REQUEST_OBJECT_ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAX_PARAMETER = 2048
# Parameters we keep from a request (anything else is ignored, as OAuth asks).
PARAMETERS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "ui_locales",
    "login_hint",
    "acr_values",
    "claims",
    "authorization_details",
    "response_mode",
    "dpop_jkt",
    "resource",
)


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    ui_locales: str | None = None
    login_hint: str | None = None
    acr_values: list[str] = field(default_factory=list)
    claims: dict[str, Any] | None = None
    authorization_details: list[dict[str, Any]] | None = None
    dpop_jkt: str | None = None
    resource: str | None = None
    pushed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationRequest:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def error(self, error: str, description: str) -> AuthorizationError:
        return AuthorizationError(error, description, redirect_uri=self.redirect_uri, state=self.state)


class AuthorizationRequests:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings

    # -- parsing -----------------------------------------------------------------------------

    async def parse(self, query: Mapping[str, str], now: datetime) -> AuthorizationRequest:
        """A browser's authorization request (query string or form)."""
        client_id = query.get("client_id")
        if not client_id:
            raise AuthorizationError("invalid_request", "client_id is missing")
        client = await self.services.clients.get(client_id)
        if client is None or client.state != "active":
            raise AuthorizationError("invalid_client", "unknown client")
        request_uri = query.get("request_uri")
        if request_uri is not None:
            return await self._pushed(client, request_uri, now)
        if client.require_par:
            # The redirect URI cannot be trusted without the pushed request: error page.
            raise AuthorizationError("invalid_request", "this client must use pushed authorization requests")
        parameters = await self._parameters(client, query, now)
        await self._prepare(parameters)
        return self._validate(client, parameters)

    async def push(self, client: Any, form: Mapping[str, str], now: datetime) -> tuple[str, int]:
        """RFC 9126: validate and store; answers (request_uri, expires_in). Errors are OAuth JSON."""
        if "request_uri" in form:
            raise invalid_request("request_uri is not allowed in a pushed request")
        if form.get("client_id", client.client_id) != client.client_id:
            raise invalid_request("client_id does not match the authenticated client")
        parameters = await self._parameters(client, {**form, "client_id": client.client_id}, now)
        await self._prepare(parameters)
        try:
            request = self._validate(client, parameters)
        except AuthorizationError as error:
            raise OAuthError(error.error, error.description) from None
        reference = new_secret()
        expires_in = self.settings.par_ttl_s
        async with self.services.runtime.db.transaction() as session:
            await store.add_pushed_request(
                session,
                request_uri_hash=token_hash(reference),
                client_id=client.client_id,
                parameters={**request.to_json(), "pushed": True},
                expires_at=now + timedelta(seconds=expires_in),
            )
        return PAR_URN + reference, expires_in

    async def _pushed(self, client: Any, request_uri: str, now: datetime) -> AuthorizationRequest:
        if not request_uri.startswith(PAR_URN) or len(request_uri) > 200:
            raise AuthorizationError("invalid_request_uri", "request_uri is not one this server issued")
        async with self.services.runtime.db.transaction() as session:
            stored = await store.take_pushed_request(session, token_hash(request_uri[len(PAR_URN) :]), now)
        if stored is None or stored["client_id"] != client.client_id:
            raise AuthorizationError("invalid_request_uri", "request_uri is unknown, used or expired")
        return AuthorizationRequest.from_json(stored["parameters"])

    async def _parameters(self, client: Any, query: Mapping[str, str], now: datetime) -> dict[str, str]:
        """The request's parameters; with JAR only those inside the signed request object."""
        request_object = query.get("request")
        if request_object is None:
            return {k: str(query[k]) for k in PARAMETERS if k in query}
        if len(request_object) > self.settings.max_request_object_bytes:
            raise AuthorizationError("invalid_request_object", "the request object is too large")
        claims = await self._request_object(client, request_object, now)
        if claims.get("client_id") not in (None, client.client_id):
            raise AuthorizationError("invalid_request_object", "client_id in the request object differs")
        values: dict[str, str] = {"client_id": client.client_id}
        for name in PARAMETERS:
            if name in claims and name != "client_id":
                value = claims[name]
                values[name] = value if isinstance(value, str) else json.dumps(value)
        return values

    async def _request_object(self, client: Any, value: str, now: datetime) -> dict[str, Any]:
        try:
            keys = KeySet.import_key_set(await self.services.clients.jwks(client))
            token = jwt.decode(value, keys, algorithms=REQUEST_OBJECT_ALGS)
        except (JoseError, ValueError, TypeError, KeyError):
            raise AuthorizationError(
                "invalid_request_object", "the request object does not verify with the client's keys"
            ) from None
        claims = dict(token.claims)
        stamp = int(now.timestamp())
        if claims.get("iss") != client.client_id:
            raise AuthorizationError("invalid_request_object", "iss must be the client_id")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.settings.issuer not in audiences:
            raise AuthorizationError("invalid_request_object", "aud must be the issuer")
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires < stamp - 30:
            raise AuthorizationError("invalid_request_object", "the request object has expired (exp)")
        if expires > stamp + 3600:
            raise AuthorizationError("invalid_request_object", "exp is too far in the future")
        issued = claims.get("nbf", claims.get("iat"))
        if isinstance(issued, int) and issued > stamp + 30:
            raise AuthorizationError("invalid_request_object", "the request object is not valid yet")
        return claims

    # -- validation --------------------------------------------------------------------------

    async def _prepare(self, parameters: Mapping[str, str]) -> None:
        """What validation needs from elsewhere: consent's data catalog (cached)."""
        if "authorization_details" in parameters:
            await self.services.data_access.load_catalog()

    def _validate(self, client: Any, p: Mapping[str, str]) -> AuthorizationRequest:
        if any(len(v) > _MAX_PARAMETER for k, v in p.items() if k not in ("claims", "authorization_details")):
            raise AuthorizationError("invalid_request", "a parameter is too long")
        redirect_uri = p.get("redirect_uri")
        if not redirect_uri:
            raise AuthorizationError("invalid_request", "redirect_uri is missing")
        if redirect_uri not in client.redirect_uris:
            raise AuthorizationError("invalid_request", "redirect_uri is not registered for this client")
        state = p.get("state")

        def fail(error: str, description: str) -> AuthorizationError:
            return AuthorizationError(error, description, redirect_uri=redirect_uri, state=state)

        if p.get("response_mode", "query") != "query":
            raise fail("invalid_request", "only response_mode=query is supported")
        if p.get("response_type") != "code":
            raise fail("unsupported_response_type", "only response_type=code is supported")
        if "authorization_code" not in client.grant_types:
            raise fail("unauthorized_client", "the client is not registered for the code flow")
        scopes = _scopes(client, p.get("scope"), fail)
        challenge = _pkce(p, fail)
        prompt = (p.get("prompt") or "").split()
        if any(value not in PROMPTS for value in prompt) or ("none" in prompt and len(prompt) > 1):
            raise fail("invalid_request", "prompt is not valid")
        max_age = _max_age(p.get("max_age"), fail)
        claims = _json_parameter(p.get("claims"), dict, fail, "claims")
        if claims is not None:
            for target, section in claims.items():
                if target not in ("id_token", "userinfo") or not isinstance(section, dict):
                    raise fail("invalid_request", "claims must have id_token/userinfo objects")
        details = _json_parameter(p.get("authorization_details"), list, fail, "authorization_details")
        if details is not None:
            details = self._authorization_details(details, fail)
        dpop_jkt = p.get("dpop_jkt")
        if dpop_jkt is not None and not re.fullmatch(r"[A-Za-z0-9_-]{43}", dpop_jkt):
            raise fail("invalid_request", "dpop_jkt is not a JWK SHA-256 thumbprint")
        return AuthorizationRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=" ".join(dict.fromkeys(scopes)),
            code_challenge=challenge,
            state=state,
            nonce=p.get("nonce"),
            prompt=prompt,
            max_age=max_age,
            ui_locales=p.get("ui_locales"),
            login_hint=p.get("login_hint"),
            acr_values=(p.get("acr_values") or "").split(),
            claims=claims,
            authorization_details=details,
            dpop_jkt=dpop_jkt,
            resource=p.get("resource"),
        )

    def _authorization_details(self, details: list[Any], fail: Any) -> list[dict[str, Any]]:
        """RFC 9396, one entry of type ``tsunagu_data_access`` (``domain/data_access.py``): items of
        consent's catalog, purpose, validity or period. Granting them needs the consent service
        (the wallet's approval leads to the signed decision): without it they are refused rather
        than silently dropped."""
        try:
            return self.services.data_access.validate(details, datetime.now(UTC))  # type: ignore[no-any-return]
        except DetailsInvalid as error:
            raise fail("invalid_authorization_details", str(error)) from None
        except CatalogUnavailable:
            raise fail("temporarily_unavailable", "the data catalog cannot be read now") from None


def _scopes(client: Any, value: str | None, fail: Any) -> list[str]:
    scopes = (value or "").split()
    if "openid" not in scopes:
        raise fail("invalid_scope", "scope must include openid")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise fail("invalid_scope", f"unsupported scope: {' '.join(unknown)[:100]}")
    if "user_number" in scopes and not client.user_number_legal_basis:
        raise fail("invalid_scope", "this client has no legal basis for the user number")
    return scopes


def _pkce(p: Mapping[str, str], fail: Any) -> str:
    challenge = p.get("code_challenge")
    if not challenge:
        raise fail("invalid_request", "code_challenge is required (PKCE, S256)")
    if p.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256")
    if not _PKCE_CHALLENGE.match(challenge):
        raise fail("invalid_request", "code_challenge is not a base64url SHA-256 value")
    return challenge


def _max_age(value: str | None, fail: Any) -> int | None:
    if value is None:
        return None
    try:
        max_age = int(value)
    except ValueError:
        raise fail("invalid_request", "max_age must be an integer") from None
    if max_age < 0:
        raise fail("invalid_request", "max_age must not be negative")
    return max_age


def _json_parameter(value: str | None, kind: type, fail: Any, name: str) -> Any:
    if value is None:
        return None
    if len(value) > 8192:
        raise fail("invalid_request", f"{name} is too large")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise fail("invalid_request", f"{name} is not valid JSON") from None
    if not isinstance(parsed, kind):
        raise fail("invalid_request", f"{name} has the wrong JSON type")
    return parsed
