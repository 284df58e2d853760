"""Everything the idp's domain needs for a request, built once per app in ``app.py``.

A domain aggregate: the routers receive it through ``api/deps.py``; domain parts that need their
siblings (sessions, logout, logins) are given it when they are made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsunagu.clients.ca import CaClient
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import TokenSigner
from tsunagu.clients.signer import SignerClient
from tsunagu.idp.domain.authorization import AuthorizationRequests
from tsunagu.idp.domain.ciba import Ciba
from tsunagu.idp.domain.claims import ClaimsRelease
from tsunagu.idp.domain.client_auth import ClientAuthenticator
from tsunagu.idp.domain.clients import ClientRegistry
from tsunagu.idp.domain.data_access import DataAccess
from tsunagu.idp.domain.logins import LoginTransactions
from tsunagu.idp.domain.logout import BackchannelLogout, RpLogout
from tsunagu.idp.domain.sessions import ResidentUpdates, Sessions
from tsunagu.idp.domain.subjects import PairwiseSubjects
from tsunagu.idp.domain.tokens import TokenService
from tsunagu.idp.settings import IdpSettings
from tsunagu.service import ServiceRuntime


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
