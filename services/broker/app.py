"""Tsunagu broker: the data linkage platform — consented personal data exchange, push, non-personal
data, exchange log, metering."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import aiohttp
import httpx
from fastapi import FastAPI
from prometheus_client import Counter

from tsunagu.broker.api import fast_routes, routers
from tsunagu.broker.api.deps import CATALOG_WRITE, LOG_READ, USAGE_READ
from tsunagu.broker.domain.access_tokens_rfc9068 import AccessTokenVerifier
from tsunagu.broker.domain.catalog import Catalog
from tsunagu.broker.domain.consent_view import ConsentView, ViewChanges
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.delegated_keys import DelegatedSigner
from tsunagu.broker.domain.deliveries import Deliveries, DeliveryPolicy
from tsunagu.broker.domain.exchange_log import ExchangeLog
from tsunagu.broker.domain.exchanges import Exchanges
from tsunagu.broker.domain.ngsild import ContextBroker, Datasets, NotificationSender, Subscriptions
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.providers import Providers
from tsunagu.broker.domain.push import Push
from tsunagu.broker.domain.quotas import ClientQuotas
from tsunagu.broker.domain.usage import Usage
from tsunagu.broker.events import CONSENT_VIEW_GROUP, EventHooks, consumers
from tsunagu.broker.settings import BrokerSettings
from tsunagu.broker.store import repository as store
from tsunagu.broker.store.models import event_tables, metadata
from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.idp import IdpClient
from tsunagu.clients.internal import CLIENT_KEEP_ALIVE_S
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import JwtSigner, TokenSigner
from tsunagu.clients.signer import BatchingSigner, SignerClient
from tsunagu.events import EventConsumer, GroupCommit
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service
from tsunagu.service.egress import EgressPolicy, egress_policy

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    CATALOG_WRITE: ["operator"],
    LOG_READ: ["consent"],
    USAGE_READ: ["operator"],
}
log = logging.getLogger(__name__)


def _consent_view(
    runtime: ServiceRuntime, settings: BrokerSettings, consent: ConsentApi, changes: ViewChanges | None
) -> ConsentView:
    group = f"{settings.service_name}.{CONSENT_VIEW_GROUP}"

    found: list[EventConsumer] = []  # the consumer, once it exists (looked up per exchange)

    def consumer() -> EventConsumer | None:
        if not found:
            found.extend(c for c in runtime.consumers if c.name == group)
        return found[0] if found else None

    def freshness(topic: str, partition: int) -> float | None:
        found = consumer()
        return found.caught_up_at(topic, partition) if found is not None else None

    def partitions(topic: str) -> int | None:
        found = consumer()
        if found is None:
            return None
        known = found.consumer.partitions_for_topic(topic)
        return len(known) if known else None

    checks = Counter(
        "tsunagu_broker_consent_checks",
        "Consent checks by who answered: the event-fed view, or consent (the view was not fresh)",
        ["source"],
        registry=runtime.metrics.registry,
    )
    return ConsentView(
        runtime.db,
        consent,
        max_age_s=settings.consent_view_max_age_ms / 1000,
        freshness=freshness,
        partitions=partitions,
        answered=lambda source: checks.labels(source=source).inc(),
        changes=changes,
    )


@asynccontextmanager
async def broker_resources(
    runtime: ServiceRuntime, hooks: EventHooks | None = None
) -> AsyncIterator[BrokerServices | None]:
    settings = runtime.settings
    assert isinstance(settings, BrokerSettings)
    if runtime.issuer is None:
        log.error("no service key configured: the broker cannot reach the platform; it refuses requests")
        yield None
        return
    async with AsyncExitStack() as stack:
        # Parties' endpoints are outside the platform: no redirects, bounded pool, per-call
        # timeouts, and only the addresses the egress policy allows (the SSRF guard, checked on
        # each resolution). aiohttp for the hot path (a provider call per exchange costs it a
        # fraction of what httpx costs); httpx for webhooks. The idp's JWKS is the platform's own.
        egress = egress_policy(settings)
        outside = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            transport=egress.httpx_transport(limits=httpx.Limits(max_connections=20)),
        )
        stack.push_async_callback(outside.aclose)
        platform_http = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=10, keepalive_expiry=CLIENT_KEEP_ALIVE_S),
        )
        stack.push_async_callback(platform_http.aclose)
        parties_http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=64, resolver=egress.aiohttp_resolver()),
            raise_for_status=False,
        )
        stack.push_async_callback(parties_http.close)
        idp = IdpClient(settings.idp_url, runtime.issuer)
        consent = ConsentApi("consent", settings.consent_url, runtime.issuer)
        signer = SignerClient(settings.signer_url, runtime.issuer)
        jlis = JlisSyncClient(settings.jlis_sync_url, runtime.issuer)
        batching = BatchingSigner(signer)
        for client in (idp, consent, signer, jlis, batching):
            stack.push_async_callback(client.aclose)
        # Exchanges and webhooks are signed in memory with a key the HSM's exchange key delegated.
        exchange_keys = DelegatedSigner(
            TokenSigner(signer, batching, purpose="exchange"), runtime.db, issuer=settings.resource
        )
        parties = Parties(runtime.db, idp)
        catalog = Catalog(runtime.db, egress)
        consent_view = _consent_view(runtime, settings, consent, hooks.view_changes if hooks else None)
        exchanges = Exchanges(
            parties=parties,
            catalog=catalog,
            consent=consent_view,
            providers=Providers(
                http=parties_http,
                egress=egress,
                signer=exchange_keys,
                jlis=jlis,
                issuer=settings.resource,
                timeout_s=settings.provider_timeout_s,
                max_response_bytes=settings.max_provider_response_bytes,
            ),
            log=GroupCommit(runtime.db, runtime.outbox, write_rows=store.add_exchanges),
        )
        ngsild = await stack.enter_async_context(_ngsild(runtime, egress))
        push, deliveries, usage = _push_and_usage(
            runtime,
            settings,
            parties=parties,
            catalog=catalog,
            consent=consent_view,
            outside=outside,
            egress=egress,
            signer=exchange_keys,
            jlis=jlis,
        )
        if hooks is not None:
            hooks.push = push
        workers = [
            asyncio.create_task(deliveries.run(runtime.stopping), name="push-deliveries"),
            asyncio.create_task(usage.run(runtime.stopping), name="usage-flush"),
        ]
        stack.push_async_callback(_stop, workers)
        yield BrokerServices(
            tokens=AccessTokenVerifier(
                issuer=settings.idp_issuer,
                resource=settings.resource,
                http=platform_http,
                skew_s=settings.clock_skew_s,
            ),
            quotas=ClientQuotas(settings.client_rate_per_s, settings.client_burst),
            parties=parties,
            catalog=catalog,
            exchanges=exchanges,
            exchange_log=ExchangeLog(runtime.db),
            exchange_keys=exchange_keys,
            ngsild=ngsild,
            push=push,
            deliveries=deliveries,
            usage=usage,
            log_clients=frozenset(settings.log_clients),
        )


@asynccontextmanager
async def _ngsild(runtime: ServiceRuntime, egress: EgressPolicy) -> AsyncIterator[ContextBroker]:
    """Non-personal data, and the loop that sends its subscriptions' notifications."""
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, transport=egress.httpx_transport()
    ) as http:
        sender = NotificationSender(runtime.db, http)
        datasets = Datasets(runtime.db)
        subscriptions = Subscriptions(runtime.db, datasets, egress)
        broker = ContextBroker(runtime.db, datasets, subscriptions, sender.queued.set)
        stopping = asyncio.Event()
        loop = asyncio.create_task(sender.run(stopping), name="broker-ngsild-notifications")
        try:
            yield broker
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop, 10)


def _push_and_usage(
    runtime: ServiceRuntime,
    settings: BrokerSettings,
    *,
    parties: Parties,
    catalog: Catalog,
    consent: ConsentView,
    outside: httpx.AsyncClient,
    egress: EgressPolicy,
    signer: JwtSigner,
    jlis: JlisSyncClient,
) -> tuple[Push, Deliveries, Usage]:
    policy = DeliveryPolicy(
        timeout_s=settings.push_timeout_s,
        max_attempts=settings.push_max_attempts,
        retry_initial_s=settings.push_retry_initial_s,
        retry_max_s=settings.push_retry_max_s,
        lease_s=settings.push_lease_s,
        poll_s=settings.push_poll_s,
        dead_retention_s=settings.push_dead_retention_s,
    )
    deliveries = Deliveries(
        db=runtime.db,
        outbox=runtime.outbox,
        parties=parties,
        catalog=catalog,
        consent=consent,
        signer=signer,
        jlis=jlis,
        http=outside,
        issuer=settings.resource,
        policy=policy,
    )
    push = Push(
        db=runtime.db,
        outbox=runtime.outbox,
        parties=parties,
        catalog=catalog,
        consent=consent,
        max_value_bytes=settings.push_max_value_bytes,
        max_subscriptions=settings.push_max_subscriptions,
        egress=egress,
        wake=deliveries.wake,
    )
    return push, deliveries, Usage(runtime.db, parties, flush_s=settings.usage_flush_s)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """The loops stop on ``runtime.stopping`` (the usage counters flush once more); then cancel."""
    await asyncio.wait(tasks, timeout=5.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def service_spec(settings: BrokerSettings) -> ServiceSpec:
    hooks = EventHooks()
    return ServiceSpec(
        settings=settings,
        title="Tsunagu broker",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        fast_routes=fast_routes,
        consumers=consumers(event_tables, hooks),
        grants=GRANTS,
        resources=partial(broker_resources, hooks=hooks),
    )


def create_app(settings: BrokerSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or BrokerSettings()))


def main() -> None:
    """``tsunagu-broker`` serves; ``tsunagu-broker migrate`` only applies the migrations."""
    run_service(service_spec, BrokerSettings())


if __name__ == "__main__":
    main()
