"""Tsunagu IdP.

OpenID Provider keyed on the user identification number: pairwise subjects, passwordless login
approved by the citizen's wallet, CIBA, consent-gated claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI

from tsunagu.clients.ca import CaClient
from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import TokenSigner
from tsunagu.clients.signer import BatchingSigner, SignerClient
from tsunagu.idp.api import fast_routes, routers
from tsunagu.idp.api.deps import ADMIN, SUBJECTS, IdpServices
from tsunagu.idp.api.oauth_errors import oauth_error_handler
from tsunagu.idp.domain.authorization import AuthorizationRequests
from tsunagu.idp.domain.ciba import Ciba
from tsunagu.idp.domain.claims import ClaimsRelease, ConsentGate, ConsentServiceGate, DenyAllConsent
from tsunagu.idp.domain.client_auth import ClientAuthenticator
from tsunagu.idp.domain.clients import ClientRegistry
from tsunagu.idp.domain.data_access import DataAccess
from tsunagu.idp.domain.errors import OAuthError
from tsunagu.idp.domain.logins import LoginTransactions
from tsunagu.idp.domain.logout import BackchannelLogout, RpLogout
from tsunagu.idp.domain.sessions import ResidentUpdates, Sessions
from tsunagu.idp.domain.subjects import PairwiseSubjects
from tsunagu.idp.domain.tokens import TokenService
from tsunagu.idp.events import Late, consumers
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.models import event_tables, metadata
from tsunagu.idp.store.replay import purge_spent
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service
from tsunagu.service.runtime import pause

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    ADMIN: ["operator"],
    SUBJECTS: ["broker"],
}
# Endpoints where guessing or flooding would matter: their own per-address budget.
SENSITIVE_PATHS = (
    "/token",
    "/par",
    "/bc-authorize",
    "/authorize",
    "/register",
    "/introspect",
    "/revoke",
    "/login/",
    "/v1/login-transactions/",
    "/v1/wallet/",
    "/grants/",
)
log = logging.getLogger(__name__)


def _pairwise_secret(settings: IdpSettings) -> bytes | None:
    """The configured secret; in dev/test one generated once into the data directory."""
    if settings.pairwise_secret is not None:
        return settings.pairwise_secret.get_secret_value().encode()
    if settings.environment == "production":
        return None
    path = settings.data_dir / "idp-pairwise.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


async def _housekeeping(runtime: ServiceRuntime, stopping: asyncio.Event, interval_s: float = 300.0) -> None:
    """Spent single-use records go (expired jti, pushed requests, codes a day past expiry)."""
    while not stopping.is_set():
        try:
            async with runtime.db.transaction() as session:
                await purge_spent(session, datetime.now(UTC), timedelta(days=1))
        except Exception:
            log.warning("idp housekeeping failed; retrying later", exc_info=True)
        await pause(stopping, interval_s)


def _resources(late: Late):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def idp_resources(runtime: ServiceRuntime) -> AsyncIterator[IdpServices | None]:
        settings = runtime.settings
        assert isinstance(settings, IdpSettings)
        secret = _pairwise_secret(settings)
        if runtime.issuer is None or secret is None:
            log.error("no service key or no pairwise secret configured: the idp refuses every request")
            yield None
            return
        async with AsyncExitStack() as stack:
            signer = SignerClient(settings.signer_url, runtime.issuer)
            stack.push_async_callback(signer.aclose)
            ca = CaClient(settings.ca_url, runtime.issuer)
            stack.push_async_callback(ca.aclose)
            jlis = JlisSyncClient(settings.jlis_sync_url, runtime.issuer)
            stack.push_async_callback(jlis.aclose)
            # One consent client for claim release and RFC 9396 data access; without a consent
            # service nothing beyond sub is released and data access is refused.
            consent: ConsentGate = DenyAllConsent()
            consent_api: ConsentApi | None = None
            if settings.consent_url:
                consent_api = ConsentApi("consent", settings.consent_url, runtime.issuer)
                stack.push_async_callback(consent_api.aclose)
                consent = ConsentServiceGate(consent_api)
            services = IdpServices(
                settings=settings,
                runtime=runtime,
                subjects=PairwiseSubjects(secret),
                claims=ClaimsRelease(jlis, consent),
                ca=ca,
                jlis=jlis,
                signer=signer,
                data_access=DataAccess(consent_api),
            )
            batching = BatchingSigner(signer)
            stack.push_async_callback(batching.aclose)
            services.token_signer = TokenSigner(signer, batching)
            services.tokens = TokenService(
                settings=settings,
                db=runtime.db,
                subjects=services.subjects,
                claims=services.claims,
                signer=services.token_signer,
                outbox=runtime.outbox,
            )
            services.clients = ClientRegistry(runtime.db, runtime.outbox, settings)
            stack.push_async_callback(services.clients.aclose)
            services.client_auth = ClientAuthenticator(services.clients, runtime.db, settings)
            services.authorization = AuthorizationRequests(services)
            services.logins = LoginTransactions(services)
            services.ciba = Ciba(services)
            services.sessions = Sessions(services)
            services.logout = RpLogout(services)
            services.backchannel_logout = BackchannelLogout(services)
            stack.push_async_callback(services.backchannel_logout.aclose)
            services.resident_updates = ResidentUpdates(runtime.db)
            services.tokens.updated_at = services.resident_updates.updated_at
            late.services = services
            stopping = asyncio.Event()
            loops = [
                asyncio.create_task(services.backchannel_logout.run(stopping), name="idp-backchannel-logout"),
                asyncio.create_task(_housekeeping(runtime, stopping), name="idp-housekeeping"),
            ]
            try:
                yield services
            finally:
                stopping.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 10)
                late.services = None

    return idp_resources


def service_spec(settings: IdpSettings) -> ServiceSpec:
    late = Late()
    return ServiceSpec(
        settings=settings,
        title="Tsunagu IdP",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        fast_routes=fast_routes,
        consumers=consumers(event_tables, late),
        grants=GRANTS,
        resources=_resources(late),
        exception_handlers={OAuthError: oauth_error_handler},
        strict_rate_limits={
            prefix: (settings.sensitive_rate_per_s, settings.sensitive_burst) for prefix in SENSITIVE_PATHS
        },
    )


def create_app(settings: IdpSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or IdpSettings()))


def main() -> None:
    """``tsunagu-idp`` serves; ``tsunagu-idp migrate`` only applies the migrations."""
    run_service(service_spec, IdpSettings())


if __name__ == "__main__":
    main()
