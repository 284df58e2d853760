"""Tsunagu broker: the data linkage platform — consented personal data exchange, push, non-personal
data, exchange log, metering."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from tsunagu.broker.api import routers
from tsunagu.broker.api.deps import CATALOG_WRITE, LOG_READ, USAGE_READ
from tsunagu.broker.domain.access_tokens_rfc9068 import AccessTokenVerifier
from tsunagu.broker.domain.catalog import Catalog
from tsunagu.broker.domain.consent_view import ConsentView
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.exchange_log import ExchangeLog
from tsunagu.broker.domain.exchanges import Exchanges
from tsunagu.broker.domain.ngsild import ContextBroker, Datasets, NotificationSender, Subscriptions
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.providers import Providers
from tsunagu.broker.domain.quotas import ClientQuotas
from tsunagu.broker.events import CONSENT_VIEW_GROUP, consumers
from tsunagu.broker.settings import BrokerSettings
from tsunagu.broker.store import repository as store
from tsunagu.broker.store.models import event_tables, metadata
from tsunagu.clients.consent import ConsentApi
from tsunagu.clients.idp import IdpClient
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import TokenSigner
from tsunagu.clients.signer import BatchingSigner, SignerClient
from tsunagu.events import EventConsumer, GroupCommit
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    CATALOG_WRITE: ["operator"],
    LOG_READ: ["consent"],
    USAGE_READ: ["operator"],
}
log = logging.getLogger(__name__)


def _consent_view(runtime: ServiceRuntime, settings: BrokerSettings, consent: ConsentApi) -> ConsentView:
    group = f"{settings.service_name}.{CONSENT_VIEW_GROUP}"

    def consumer() -> EventConsumer | None:
        return next((c for c in runtime.consumers if c.name == group), None)

    def freshness(topic: str, partition: int) -> float | None:
        found = consumer()
        return found.caught_up_at(topic, partition) if found is not None else None

    def partitions(topic: str) -> int | None:
        found = consumer()
        if found is None:
            return None
        known = found.consumer.partitions_for_topic(topic)
        return len(known) if known else None

    return ConsentView(
        runtime.db,
        consent,
        max_age_s=settings.consent_view_max_age_ms / 1000,
        freshness=freshness,
        partitions=partitions,
    )


@asynccontextmanager
async def broker_resources(runtime: ServiceRuntime) -> AsyncIterator[BrokerServices | None]:
    settings = runtime.settings
    assert isinstance(settings, BrokerSettings)
    if runtime.issuer is None:
        log.error("no service key configured: the broker cannot reach the platform; it refuses requests")
        yield None
        return
    async with AsyncExitStack() as stack:
        # Parties' endpoints are outside the platform: no redirects, bounded pool, per-call timeout.
        outside = httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=200))
        stack.push_async_callback(outside.aclose)
        idp = IdpClient(settings.idp_url, runtime.issuer)
        consent = ConsentApi("consent", settings.consent_url, runtime.issuer)
        signer = SignerClient(settings.signer_url, runtime.issuer)
        jlis = JlisSyncClient(settings.jlis_sync_url, runtime.issuer)
        batching = BatchingSigner(signer)
        for client in (idp, consent, signer, jlis, batching):
            stack.push_async_callback(client.aclose)
        exchange_keys = TokenSigner(signer, batching, purpose="exchange")
        parties = Parties(runtime.db, idp)
        catalog = Catalog(runtime.db)
        exchanges = Exchanges(
            parties=parties,
            catalog=catalog,
            consent=_consent_view(runtime, settings, consent),
            providers=Providers(
                http=outside,
                signer=exchange_keys,
                jlis=jlis,
                issuer=settings.resource,
                timeout_s=settings.provider_timeout_s,
                max_response_bytes=settings.max_provider_response_bytes,
            ),
            log=GroupCommit(runtime.db, runtime.outbox, write_rows=store.add_exchanges),
        )
        ngsild = await stack.enter_async_context(_ngsild(runtime))
        yield BrokerServices(
            tokens=AccessTokenVerifier(
                issuer=settings.idp_issuer,
                resource=settings.resource,
                http=outside,
                skew_s=settings.clock_skew_s,
            ),
            quotas=ClientQuotas(settings.client_rate_per_s, settings.client_burst),
            parties=parties,
            catalog=catalog,
            exchanges=exchanges,
            exchange_log=ExchangeLog(runtime.db),
            exchange_keys=exchange_keys,
            ngsild=ngsild,
        )


@asynccontextmanager
async def _ngsild(runtime: ServiceRuntime) -> AsyncIterator[ContextBroker]:
    """Non-personal data, and the loop that sends its subscriptions' notifications."""
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
        sender = NotificationSender(runtime.db, http)
        datasets = Datasets(runtime.db)
        broker = ContextBroker(runtime.db, datasets, Subscriptions(runtime.db, datasets), sender.queued.set)
        stopping = asyncio.Event()
        loop = asyncio.create_task(sender.run(stopping), name="broker-ngsild-notifications")
        try:
            yield broker
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop, 10)


def service_spec(settings: BrokerSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu broker",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
        resources=broker_resources,
    )


def create_app(settings: BrokerSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or BrokerSettings()))


def main() -> None:
    """``tsunagu-broker`` serves; ``tsunagu-broker migrate`` only applies the migrations."""
    run_service(service_spec, BrokerSettings())


if __name__ == "__main__":
    main()
