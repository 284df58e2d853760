"""Tsunagu jlis-sync: J-LIS linkage: CRL and OCSP, push notices, latest basic-4 information updates."""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.jlis_sync.api import routers
from tsunagu.jlis_sync.events import consumers
from tsunagu.jlis_sync.settings import JlisSyncSettings
from tsunagu.jlis_sync.store.models import event_tables, metadata
from tsunagu.service import ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


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
    )


def create_app(settings: JlisSyncSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or JlisSyncSettings()))


def main() -> None:
    """``tsunagu-jlis-sync`` serves; ``tsunagu-jlis-sync migrate`` only applies the migrations."""
    run_service(service_spec, JlisSyncSettings())


if __name__ == "__main__":
    main()
