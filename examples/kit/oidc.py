"""Login with the Tsunagu idp — plain Authlib, configured once.

Three things are particular to a strict OpenID Provider, none to Tsunagu:

- ``private_key_jwt`` with a short assertion: Authlib signs assertions valid for an hour; the idp
  accepts at most five minutes (and each ``jti`` once), so the lifetime is passed explicitly.
- PKCE S256 on every request (the idp requires it of every client).
- RFC 9207: the authorization response carries ``iss``; it is compared with the issuer before the
  code is redeemed (mix-up defence). Authlib leaves that check to the application.
"""

from __future__ import annotations

import json
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError, StarletteOAuth2App
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from starlette.requests import Request

from examples.kit.config import RpConfig

ASSERTION_LIFETIME_S = 120


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's ``private_key_jwt`` with a two-minute client assertion."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return str(
            private_key_jwt_sign(
                auth.client_secret,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                alg=self.alg,
                expires_in=ASSERTION_LIFETIME_S,
            )
        )


def register_idp(config: RpConfig) -> StarletteOAuth2App:
    """The idp as an Authlib client: discovery, PKCE, ``private_key_jwt`` (ES256)."""
    oauth = OAuth()
    client: StarletteOAuth2App = oauth.register(
        "tsunagu",
        client_id=config.client_id,
        client_secret=config.key(),  # private_key_jwt: Authlib signs the assertion with it
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "private_key_jwt",
        },
        client_auth_methods=[ShortLivedPrivateKeyJWT(alg="ES256")],
    )
    return client


def data_access_details(items: list[str], purpose: dict[str, str], required: list[str]) -> str:
    """The RFC 9396 ``authorization_details`` asking for data items in the login."""
    entry = {"type": "tsunagu_data_access", "items": items, "required": required, "purpose": purpose}
    return json.dumps([entry], ensure_ascii=False, separators=(",", ":"))


async def finish_login(idp: StarletteOAuth2App, request: Request, issuer: str) -> dict[str, Any]:
    """The callback: check ``iss`` (RFC 9207), redeem the code, validate the ID token."""
    if request.query_params.get("error"):
        raise OAuthError(
            error=request.query_params["error"],
            description=request.query_params.get("error_description", ""),
        )
    if request.query_params.get("iss") != issuer:
        raise OAuthError(error="invalid_request", description="iss does not name our OpenID Provider")
    token: dict[str, Any] = await idp.authorize_access_token(request)
    return token
