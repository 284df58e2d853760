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


def create_app(settings: JlisSyncSettings | None = None) -> FastAPI:
    settings = settings or JlisSyncSettings()
    return create_service_app(
        ServiceSpec(
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
    )


def main() -> None:
    run_service(create_app, JlisSyncSettings())


if __name__ == "__main__":
    main()
