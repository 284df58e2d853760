"""Tsunagu jlis-sync: J-LIS linkage: CRL and OCSP, push notices, latest basic-4 information updates."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from fastapi import FastAPI

from tsunagu.jlis_sync.api import routers
from tsunagu.jlis_sync.api.deps import ADMIN, LINK, READ_RESIDENT, STATUS
from tsunagu.jlis_sync.domain.service import JlisSyncService
from tsunagu.jlis_sync.events import consumers
from tsunagu.jlis_sync.jlis.client import JlisClient
from tsunagu.jlis_sync.settings import JlisSyncSettings
from tsunagu.jlis_sync.store.models import event_tables, metadata
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, pause, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    LINK: ["ca"],
    STATUS: ["ca"],
    READ_RESIDENT: ["idp", "broker", "ca"],
    ADMIN: ["operator"],
}
log = logging.getLogger(__name__)


async def sync_crl_periodically(service: JlisSyncService, every_s: float, stopping: asyncio.Event) -> None:
    """One CRL cycle per interval; a refused CRL is alarmed (logged as an error), never applied."""
    while not stopping.is_set():
        try:
            outcome = await service.sync_crl()
            log.info("CRL cycle", extra={"status": outcome.status, "crl_number": outcome.crl_number})
        except Exception as exc:
            log.error("CRL cycle failed", extra={"error": type(exc).__name__, "detail": str(exc)[:200]})
        await pause(stopping, every_s)


@asynccontextmanager
async def jlis_resources(runtime: ServiceRuntime) -> AsyncIterator[JlisSyncService | None]:
    settings = runtime.settings
    assert isinstance(settings, JlisSyncSettings)
    endpoints = settings.jlis
    if endpoints.root_ca_file is None or endpoints.signing_ca_file is None:
        log.error("no J-LIS trust anchors configured: links, status checks and pushes are refused")
        yield None
        return
    client = JlisClient(endpoints)
    service = JlisSyncService(
        runtime.db,
        runtime.outbox,
        client,
        signing_ca=x509.load_pem_x509_certificate(endpoints.signing_ca_file.read_bytes()),
        root_ca=x509.load_pem_x509_certificate(endpoints.root_ca_file.read_bytes()),
        operator_id=endpoints.operator_id,
        push_max_age=timedelta(seconds=settings.push_max_age_s),
    )
    stopping = asyncio.Event()
    loop = asyncio.create_task(sync_crl_periodically(service, settings.crl_interval_s, stopping))
    try:
        yield service
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop, 10)
        await client.aclose()


def service_spec(settings: JlisSyncSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu jlis-sync",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
        resources=jlis_resources,
    )


def create_app(settings: JlisSyncSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or JlisSyncSettings()))


def main() -> None:
    """``tsunagu-jlis-sync`` serves; ``tsunagu-jlis-sync migrate`` only applies the migrations."""
    run_service(service_spec, JlisSyncSettings())


if __name__ == "__main__":
    main()
