"""Tsunagu consent: dynamic opt-in — signed, revocable, auditable consent records."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI
from joserfc.jwk import ECKey

from tsunagu.clients.broker import BrokerClient
from tsunagu.clients.ca import CaClient
from tsunagu.clients.internal import CLIENT_KEEP_ALIVE_S
from tsunagu.clients.signer import BatchingSigner, SignerClient
from tsunagu.consent.api import fast_routes, routers
from tsunagu.consent.api.dashboard import LoginFirst, to_login
from tsunagu.consent.api.deps import (
    DECISIONS_EXPORT,
    EFFECTIVE_READ,
    RECIPIENTS_WRITE,
    REQUESTS_CREATE,
    ConsentServices,
)
from tsunagu.consent.domain.context import ConsentContext, ConsentPolicy
from tsunagu.consent.domain.dashboard import Dashboard
from tsunagu.consent.domain.decisions import Decisions
from tsunagu.consent.domain.effective_cache import EffectiveCache
from tsunagu.consent.domain.exchange_log import ExchangeLog
from tsunagu.consent.domain.oidc_rp import ClientCredentials, OidcRelyingParty
from tsunagu.consent.domain.queries import ConsentQueries
from tsunagu.consent.domain.receipts import Receipts
from tsunagu.consent.domain.requests import ConsentRequests
from tsunagu.consent.events import consumers
from tsunagu.consent.settings import ConsentSettings, DashboardSettings
from tsunagu.consent.store import dashboard as dashboard_store
from tsunagu.consent.store import repository
from tsunagu.consent.store.changes import ChangeListener
from tsunagu.consent.store.models import event_tables, metadata
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service
from tsunagu.service.runtime import pause

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# Anonymous callers create a row per dashboard login: a tighter per-address budget there.
DASHBOARD_LOGIN_PATHS = ("/dashboard/login", "/dashboard/callback")
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    RECIPIENTS_WRITE: ["operator", "idp"],
    REQUESTS_CREATE: ["operator", "idp", "broker"],
    EFFECTIVE_READ: ["idp", "broker"],
    DECISIONS_EXPORT: ["operator"],
}
log = logging.getLogger(__name__)


def _policy(settings: ConsentSettings) -> ConsentPolicy:
    return ConsentPolicy(
        max_signature_age_s=settings.max_signature_age_s,
        skew_s=settings.clock_skew_s,
        request_ttl_s=settings.request_ttl_s,
        max_validity_days=settings.max_validity_days,
    )


async def _housekeeping(runtime: ServiceRuntime, stopping: asyncio.Event, interval_s: float = 300.0) -> None:
    """Spent records go: wallet query jti past their freshness, expired dashboard sessions."""
    while not stopping.is_set():
        try:
            async with runtime.db.transaction() as session:
                now = datetime.now(UTC)
                await repository.forget_expired_jti(session, now)
                await dashboard_store.forget_expired_sessions(session, now)
        except Exception:
            log.warning("consent housekeeping failed; retrying later", exc_info=True)
        await pause(stopping, interval_s)


def _dashboard(
    settings: DashboardSettings,
    http: httpx.AsyncClient,
    context: ConsentContext,
    requests: ConsentRequests,
    queries: ConsentQueries,
    *,
    exchange_log: ExchangeLog,
) -> Dashboard | None:
    if not settings.enabled:
        return None
    assert settings.issuer and settings.client_id and settings.redirect_uri
    key = None
    if settings.client_key_file is not None:
        key = ECKey.import_key(settings.client_key_file.read_bytes())
        key.ensure_kid()
    secret = settings.client_secret.get_secret_value() if settings.client_secret else None
    rp = OidcRelyingParty(
        http, settings.issuer, ClientCredentials(settings.client_id, key, secret), settings.redirect_uri
    )
    return Dashboard(
        context,
        rp,
        requests,
        queries,
        session_ttl_s=settings.session_ttl_s,
        login_ttl_s=settings.login_ttl_s,
        change_ttl_s=settings.change_ttl_s,
        exchange_log=exchange_log,
    )


@asynccontextmanager
async def consent_resources(runtime: ServiceRuntime) -> AsyncIterator[ConsentServices | None]:
    settings = runtime.settings
    assert isinstance(settings, ConsentSettings)
    if runtime.issuer is None:
        log.error("no service key configured: consent cannot ask the CA or the signer; it refuses requests")
        yield None
        return
    signer = SignerClient(settings.signer_url, runtime.issuer)
    ca = CaClient(settings.ca_url, runtime.issuer)
    batching = BatchingSigner(signer)
    context = ConsentContext(
        db=runtime.db,
        outbox=runtime.outbox,
        ca=ca,
        receipts=Receipts(signer, batching),
        policy=_policy(settings),
        effective=EffectiveCache(settings.effective_cache_people),
    )
    requests, queries = ConsentRequests(context), ConsentQueries(context)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(ca.aclose)
        stack.push_async_callback(signer.aclose)
        stack.push_async_callback(batching.aclose)
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=10, limits=httpx.Limits(keepalive_expiry=CLIENT_KEEP_ALIVE_S))
        )
        broker = BrokerClient(settings.broker_url, runtime.issuer) if settings.broker_url else None
        if broker is not None:
            stack.push_async_callback(broker.aclose)
        exchange_log = ExchangeLog(context, queries, broker)
        dashboard = _dashboard(
            settings.dashboard, http, context, requests, queries, exchange_log=exchange_log
        )
        stopping = asyncio.Event()
        tasks = [
            asyncio.create_task(_housekeeping(runtime, stopping), name="consent-housekeeping"),
            *_change_listener(runtime, context.effective, stopping),
        ]
        try:
            yield ConsentServices(requests, Decisions(context), queries, exchange_log, dashboard)
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks), 10)


def _change_listener(
    runtime: ServiceRuntime, cache: EffectiveCache, stopping: asyncio.Event
) -> list[asyncio.Task[None]]:
    """On PostgreSQL, the listener that keeps the effective-consent cache honest across processes;
    SQLite is one process, whose own writes invalidate it."""
    if runtime.db.is_sqlite:
        cache.set_live(True)
        return []
    listener = ChangeListener(runtime.db.url, cache.changed_bucket, cache.set_live)
    return [asyncio.create_task(listener.run(stopping), name="consent-change-listener")]


def service_spec(settings: ConsentSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu consent",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        fast_routes=fast_routes,
        consumers=consumers(event_tables),
        grants=GRANTS,
        resources=consent_resources,
        exception_handlers={LoginFirst: to_login},
        strict_rate_limits={
            path: (settings.dashboard.login_rate_per_s, settings.dashboard.login_burst)
            for path in DASHBOARD_LOGIN_PATHS
        },
    )


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or ConsentSettings()))


def main() -> None:
    """``tsunagu-consent`` serves; ``tsunagu-consent migrate`` only applies the migrations."""
    run_service(service_spec, ConsentSettings())


if __name__ == "__main__":
    main()
