"""OpenID Provider metadata (OIDC Discovery 1.0, RFC 8414 members) and the JWK Set.

Every value states what this idp does — the lists come from the modules that enforce them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from tsunagu.clients.jwt_signing import SIGNING_ALGORITHMS
from tsunagu.idp.api.deps import IdpServices, services
from tsunagu.idp.domain.authorization import ACR_VALUES, PROMPTS, REQUEST_OBJECT_ALGS
from tsunagu.idp.domain.claims import CLAIM_ITEMS, TRUST_FRAMEWORK
from tsunagu.idp.domain.client_auth import ASSERTION_ALGORITHMS
from tsunagu.idp.domain.dpop import DPOP_ALGORITHMS
from tsunagu.idp.domain.tokens import GRANT_CIBA, GRANT_CLIENT_CREDENTIALS, GRANT_CODE, GRANT_REFRESH

router = APIRouter(tags=["discovery"])
DISCOVERY_MAX_AGE_S = 3600
JWKS_MAX_AGE_S = 60  # the signer's JWKS is re-read as often; a next key is published before use
AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
_documents: dict[str, dict[str, Any]] = {}


def provider_metadata(issuer: str) -> dict[str, Any]:
    endpoint_auth = {
        "auth_methods_supported": AUTH_METHODS,
        "auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
    }
    person_claims = sorted(CLAIM_ITEMS)
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "registration_endpoint": f"{issuer}/register",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "require_pushed_authorization_requests": False,
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "backchannel_authentication_endpoint": f"{issuer}/bc-authorize",
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_user_code_parameter_supported": False,
        "scopes_supported": ["openid", "profile", "address", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [GRANT_CODE, GRANT_REFRESH, GRANT_CLIENT_CREDENTIALS, GRANT_CIBA],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": sorted(PROMPTS),
        "claim_types_supported": ["normal"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "sid",
            *person_claims,
            "updated_at",
            "user_number",
            "verified_claims",
        ],
        "claims_parameter_supported": True,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGS),
        "authorization_response_iss_parameter_supported": True,
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "ui_locales_supported": ["ja", "en"],
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "verified_claims_supported": True,
        "trust_frameworks_supported": [TRUST_FRAMEWORK],
        "evidence_supported": ["electronic_signature"],
        "claims_in_verified_claims_supported": person_claims,
        "authorization_details_types_supported": ["tsunagu_data_access"],
        "grant_management_endpoint": f"{issuer}/grants",
        "grant_management_actions_supported": ["query", "revoke"],
        "grant_management_action_required": False,
    }
    for endpoint in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        for suffix, value in endpoint_auth.items():
            metadata[f"{endpoint}_{suffix}"] = value
    return metadata


@router.get("/.well-known/openid-configuration")
async def openid_configuration(idp: IdpServices = Depends(services)) -> Response:
    issuer = idp.settings.issuer
    document = _documents.get(issuer)
    if document is None:
        document = _documents[issuer] = provider_metadata(issuer)
    return JSONResponse(document, headers={"Cache-Control": f"public, max-age={DISCOVERY_MAX_AGE_S}"})


@router.get("/jwks")
async def jwks(idp: IdpServices = Depends(services)) -> Response:
    """The ID-token / access-token keys: next (published before they sign), active, retired."""
    return JSONResponse(
        await idp.token_signer.jwks(),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"},
    )
