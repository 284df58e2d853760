"""Authentication of internal (service-to-service) calls with short-lived ES256 service tokens.

Each service holds an EC P-256 key (:mod:`tsunagu.auth.keys`), mints a token per callee
(:class:`ServiceTokenIssuer`, sent by :class:`ServiceTokenAuth`), and verifies incoming tokens
against the trust file (:class:`ServiceTokenVerifier`) and its :class:`AccessPolicy`
(``Depends(require_permission("signer:sign"))``).
"""

from tsunagu.auth.errors import CallerNotAllowed, InvalidServiceToken, MissingServiceToken
from tsunagu.auth.fastapi import InternalAuth, require_permission
from tsunagu.auth.httpx_auth import ServiceTokenAuth
from tsunagu.auth.keys import (
    ProvisionedCredentials,
    key_id,
    load_private_key,
    provision_service_credentials,
    public_jwk,
)
from tsunagu.auth.policy import AccessPolicy
from tsunagu.auth.tokens import (
    TOKEN_TYPE,
    ServicePrincipal,
    ServiceTokenIssuer,
    ServiceTokenVerifier,
)
from tsunagu.auth.trust import TrustedKey, TrustStore

__all__ = [
    "TOKEN_TYPE",
    "AccessPolicy",
    "CallerNotAllowed",
    "InternalAuth",
    "InvalidServiceToken",
    "MissingServiceToken",
    "ProvisionedCredentials",
    "ServicePrincipal",
    "ServiceTokenAuth",
    "ServiceTokenIssuer",
    "ServiceTokenVerifier",
    "TrustStore",
    "TrustedKey",
    "key_id",
    "load_private_key",
    "provision_service_credentials",
    "public_jwk",
    "require_permission",
]
