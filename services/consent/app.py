"""Tsunagu consent: dynamic opt-in — signed, revocable, auditable consent records."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from tsunagu.clients.ca import CaClient
from tsunagu.clients.signer import BatchingSigner, SignerClient
from tsunagu.consent.api import routers
from tsunagu.consent.api.deps import (
    DECISIONS_EXPORT,
    EFFECTIVE_READ,
    RECIPIENTS_WRITE,
    REQUESTS_CREATE,
    ConsentServices,
)
from tsunagu.consent.domain.context import ConsentContext, ConsentPolicy
from tsunagu.consent.domain.decisions import Decisions
from tsunagu.consent.domain.queries import ConsentQueries
from tsunagu.consent.domain.receipts import Receipts
from tsunagu.consent.domain.requests import ConsentRequests
from tsunagu.consent.events import consumers
from tsunagu.consent.settings import ConsentSettings
from tsunagu.consent.store.models import event_tables, metadata
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
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
    )
    try:
        yield ConsentServices(ConsentRequests(context), Decisions(context), ConsentQueries(context))
    finally:
        await batching.aclose()
        await signer.aclose()
        await ca.aclose()


def service_spec(settings: ConsentSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu consent",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
        resources=consent_resources,
    )


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or ConsentSettings()))


def main() -> None:
    """``tsunagu-consent`` serves; ``tsunagu-consent migrate`` only applies the migrations."""
    run_service(service_spec, ConsentSettings())


if __name__ == "__main__":
    main()
