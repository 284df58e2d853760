"""Tsunagu signer: HSM-backed signing behind PKCS#11: platform keys, JWKS, rotation, audited signatures."""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.service import ServiceSpec, create_service_app, run_service
from tsunagu.signer.api import routers
from tsunagu.signer.events import consumers
from tsunagu.signer.settings import SignerSettings
from tsunagu.signer.store.models import event_tables, metadata

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


def service_spec(settings: SignerSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu signer",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
    )


def create_app(settings: SignerSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or SignerSettings()))


def main() -> None:
    """``tsunagu-signer`` serves; ``tsunagu-signer migrate`` only applies the migrations."""
    run_service(service_spec, SignerSettings())


if __name__ == "__main__":
    main()
