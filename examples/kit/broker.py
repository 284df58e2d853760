"""The broker's public API, as a consumer sees it (services/broker/README.md):

- an access token for the broker: OAuth ``client_credentials`` at the idp's token endpoint with
  ``resource=<broker>`` (RFC 8707) and ``private_key_jwt``, cached until shortly before it expires;
- ``POST /v1/exchanges {sub, items, purpose}`` — pull items about a citizen, named by *our own*
  pairwise ``sub``; 403 ``consent-required`` when the citizen has not allowed it;
- ``POST /v1/subscriptions`` — push: the broker POSTs a signed JWT (``application/jwt``) to our
  webhook when a subscribed item changes for a citizen who allowed it;
- ``GET /v1/jwks`` — the keys those JWTs are signed with (the broker's HSM keys, and short-lived
  keys the HSM keys certify: each carries its certificate in ``tsunagu_delegation``).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from examples.kit.config import RpConfig
from examples.kit.oidc import ShortLivedPrivateKeyJWT

PUSH_TYP = "tsunagu-data-push+jwt"
DELEGATION_TYP = "tsunagu-key-delegation+jwt"
ALGORITHMS = ["ES256", "RS256"]
TOKEN_MARGIN_S = 30
MAX_PUSH_BYTES = 65_536 + 4_096


@dataclass(frozen=True)
class Exchange:
    """What the broker answered: the items, or the problem (RFC 9457) that refused them."""

    status: int
    items: dict[str, Any]
    problem: dict[str, Any] | None = None

    @property
    def refused(self) -> str | None:
        if self.problem is None:
            return None
        return str(self.problem.get("type", "")).rsplit(":", 1)[-1] or str(self.status)


class BadPush(ValueError):
    """A webhook body that is not a genuine, fresh push for us."""


class KeysUnavailable(RuntimeError):
    """The broker's keys could not be read: answer 503, the broker will retry the delivery."""


def trusted_keys(jwks: dict[str, Any], broker: str) -> KeySet:
    """The broker's HSM keys, plus each delegated key one of them certified (typ, issuer, ``sub`` =
    the key's kid, the same public key, not expired). Any other key is ignored."""
    anchors_json = [k for k in jwks.get("keys", []) if "tsunagu_delegation" not in k]
    anchors = KeySet.import_key_set({"keys": anchors_json})
    trusted = list(anchors_json)
    for key in jwks.get("keys", []):
        certificate = key.get("tsunagu_delegation")
        if not isinstance(certificate, str):
            continue
        try:
            verified = jws.deserialize_compact(certificate, anchors, algorithms=ALGORITHMS)
            claims = json.loads(verified.payload)
        except (JoseError, ValueError):
            continue
        public = {k: v for k, v in key.items() if k != "tsunagu_delegation"}
        if (
            verified.headers().get("typ") == DELEGATION_TYP
            and claims.get("iss") == broker
            and claims.get("sub") == key.get("kid")
            and claims.get("jwk") == public
            and isinstance(claims.get("exp"), int)
            and claims["exp"] > time.time()
        ):
            trusted.append(public)
    return KeySet.import_key_set({"keys": trusted})


class Broker:
    def __init__(self, config: RpConfig, scope: str) -> None:
        self.config = config
        self.scope = scope
        self.http = httpx.AsyncClient(base_url=config.broker_url, timeout=10)
        self.oauth = AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=config.key(),
            token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - a method name
            scope=scope,
            timeout=10,
        )
        self.oauth.register_client_auth_method(ShortLivedPrivateKeyJWT(alg="ES256"))
        self._token: dict[str, Any] | None = None
        self._token_endpoint = ""
        self._keys: KeySet | None = None
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.oauth.aclose()

    async def _bearer(self) -> dict[str, str]:
        if self._token is None or self._token["expires_at"] - TOKEN_MARGIN_S < time.time():
            if not self._token_endpoint:
                discovery = await self.http.get(f"{self.config.issuer}/.well-known/openid-configuration")
                discovery.raise_for_status()
                self._token_endpoint = discovery.json()["token_endpoint"]
            self._token = dict(
                await self.oauth.fetch_token(
                    self._token_endpoint, grant_type="client_credentials", resource=self.config.broker_url
                )
            )
        return {"Authorization": f"Bearer {self._token['access_token']}"}

    async def exchange(self, sub: str, items: list[str], purpose: str) -> Exchange:
        response = await self.http.post(
            "/v1/exchanges",
            json={"sub": sub, "items": items, "purpose": purpose},
            headers=await self._bearer(),
        )
        try:
            body = response.json()
        except ValueError:  # not the broker answering (a proxy's error page, say)
            body = {"type": "urn:example:not-json", "status": response.status_code}
        if response.status_code == 200 and isinstance(body, dict):
            return Exchange(200, dict(body.get("items", {})))
        return Exchange(response.status_code, {}, body if isinstance(body, dict) else {})

    async def ensure_subscription(self, items: list[str], purpose: str) -> str:
        """Subscribe our webhook to ``items`` once (idempotent across restarts)."""
        headers = await self._bearer()
        existing = await self.http.get("/v1/subscriptions", headers=headers)
        existing.raise_for_status()
        for subscription in existing.json().get("subscriptions", []):
            if subscription.get("url") == self.config.webhook_url and sorted(subscription["items"]) == sorted(
                items
            ):
                return str(subscription["subscription_id"])
        created = await self.http.post(
            "/v1/subscriptions",
            json={"items": items, "purpose": purpose, "url": self.config.webhook_url},
            headers=headers,
        )
        created.raise_for_status()
        return str(created.json()["subscription_id"])

    async def _key_set(self, refresh: bool) -> KeySet:
        if self._keys is None or refresh:
            try:
                response = await self.http.get("/v1/jwks")
                response.raise_for_status()
                self._keys = trusted_keys(response.json(), self.config.broker_url)
            except (httpx.HTTPError, ValueError) as error:
                raise KeysUnavailable(type(error).__name__) from error
        return self._keys

    async def verify_push(self, body: bytes) -> dict[str, Any]:
        """The claims of a genuine push for us: signature by a broker key, ``typ``, ``iss``,
        ``aud`` = our client id, not expired, ``jti`` not seen before (delivery is at least once)."""
        if len(body) > MAX_PUSH_BYTES:
            raise BadPush("too large")
        token = body.decode("ascii", errors="replace").strip()
        try:
            try:
                verified = jws.deserialize_compact(token, await self._key_set(False), algorithms=ALGORITHMS)
            except JoseError:  # signed by a key published since we last looked
                verified = jws.deserialize_compact(token, await self._key_set(True), algorithms=ALGORITHMS)
            claims: dict[str, Any] = json.loads(verified.payload)
        except (JoseError, ValueError) as error:
            raise BadPush("signature") from error
        if verified.headers().get("typ") != PUSH_TYP:
            raise BadPush("typ")
        if claims.get("iss") != self.config.broker_url or claims.get("aud") != self.config.client_id:
            raise BadPush("issuer or audience")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            raise BadPush("expired")
        jti = str(claims.get("jti", ""))
        if not jti:
            raise BadPush("jti")
        if jti in self._seen:
            return {}  # a redelivery of what we already have
        self._seen[jti] = time.time()
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return claims
