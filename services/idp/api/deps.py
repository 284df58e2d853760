"""The idp's domain services for a request (built once per app in ``app.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from tsunagu.clients.ca import CaClient
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.signer import SignerClient
from tsunagu.errors import ServiceUnavailable
from tsunagu.idp.domain.authorization import AuthorizationRequests
from tsunagu.idp.domain.ciba import Ciba
from tsunagu.idp.domain.claims import ClaimsRelease
from tsunagu.idp.domain.client_auth import ClientAuthenticator
from tsunagu.idp.domain.clients import ClientRegistry
from tsunagu.idp.domain.data_access import DataAccess
from tsunagu.idp.domain.jwt_signing import TokenSigner
from tsunagu.idp.domain.logins import LoginTransactions
from tsunagu.idp.domain.logout import BackchannelLogout, RpLogout
from tsunagu.idp.domain.sessions import ResidentUpdates, Sessions
from tsunagu.idp.domain.subjects import PairwiseSubjects
from tsunagu.idp.domain.tokens import TokenService
from tsunagu.idp.settings import IdpSettings
from tsunagu.service import ServiceRuntime, get_runtime

ADMIN = "idp:admin"  # tenants and clients (operator)
SUBJECTS = "idp:subjects:read"  # map a client's pairwise sub back to the person (broker)


class IdpNotConfigured(ServiceUnavailable):
    code = "idp-not-configured"
    title = "The idp is not configured (service credentials or pairwise secret missing)"


@dataclass
class IdpServices:
    settings: IdpSettings
    runtime: ServiceRuntime
    subjects: PairwiseSubjects
    claims: ClaimsRelease
    ca: CaClient
    jlis: JlisSyncClient
    signer: SignerClient
    # Each part of the idp adds its component here (typed) and builds it in app.py's resources.
    clients: ClientRegistry = field(init=False)  # tenants, clients, registration, client keys
    client_auth: ClientAuthenticator = field(init=False)  # client authentication (token, PAR, CIBA …)
    # Parts that need the whole services object are set right after it is made (init=False).
    authorization: AuthorizationRequests = field(init=False)
    logins: LoginTransactions = field(init=False)
    ciba: Ciba = field(init=False)
    sessions: Sessions = field(init=False)
    logout: RpLogout = field(init=False)
    backchannel_logout: BackchannelLogout = field(init=False)
    resident_updates: ResidentUpdates = field(init=False)
    token_signer: TokenSigner = field(init=False)  # JWTs signed by the signer, our JWKS
    tokens: TokenService = field(init=False)  # grants, codes, tokens, introspection, revocation
    # RFC 9396 data access decided by the citizen's consent (disabled without CONSENT_URL).
    data_access: DataAccess = field(default_factory=lambda: DataAccess(None))


def services(request: Request) -> IdpServices:
    resources = get_runtime(request).resources
    if not isinstance(resources, IdpServices):
        raise IdpNotConfigured("set TSUNAGU_IDP_AUTH__ files (and PAIRWISE_SECRET in production)")
    return resources
