"""Tsunagu signer: HSM-backed signing behind PKCS#11: platform keys, JWKS, rotation, audited signatures."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from tsunagu.pkcs11 import Pkcs11Token
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service
from tsunagu.signer.api import fast_routes, routers
from tsunagu.signer.api.deps import ADMIN, READ_KEYS, SIGN
from tsunagu.signer.domain.keys import ALL_SERVICES
from tsunagu.signer.domain.service import SignerService
from tsunagu.signer.events import consumers
from tsunagu.signer.hsm.pkcs11_backend import Pkcs11Backend
from tsunagu.signer.settings import SignerSettings
from tsunagu.signer.store.models import event_tables, metadata

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default); each key's own ACL then decides who
# may sign with it.
GRANTS: dict[str, list[str]] = {
    SIGN: list(ALL_SERVICES),
    READ_KEYS: [*ALL_SERVICES, "operator"],
    ADMIN: ["operator"],
}
log = logging.getLogger(__name__)


@asynccontextmanager
async def hsm_resources(runtime: ServiceRuntime) -> AsyncIterator[SignerService | None]:
    """Open the token (a failure is logged, not fatal: calls answer 503 until it is reachable)."""
    settings = runtime.settings
    assert isinstance(settings, SignerSettings)
    if settings.pkcs11 is None:
        log.error("no PKCS#11 module configured: the signer will refuse to sign")
        yield None
        return
    token = Pkcs11Token(settings.pkcs11)
    try:
        await token.open()
    except Exception as exc:
        log.error("token not reachable at start; will retry on use", extra={"error": type(exc).__name__})
    try:
        yield SignerService(
            runtime.db,
            Pkcs11Backend(token),
            runtime.outbox,
            grace=timedelta(seconds=settings.rotation_grace_s),
            max_items=settings.max_batch_items,
            max_payload_bytes=settings.max_payload_bytes,
        )
    finally:
        await token.close()


async def hsm_ready(runtime: ServiceRuntime) -> bool:
    service = runtime.resources
    return isinstance(service, SignerService) and await service.backend.healthy()


def service_spec(settings: SignerSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu signer",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        fast_routes=fast_routes,
        consumers=consumers(event_tables),
        grants=GRANTS,
        resources=hsm_resources,
        readiness={"hsm": hsm_ready},
    )


def create_app(settings: SignerSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or SignerSettings()))


def main() -> None:
    """``tsunagu-signer`` serves; ``tsunagu-signer migrate`` only applies the migrations."""
    run_service(service_spec, SignerSettings())


if __name__ == "__main__":
    main()
