"""Tsunagu consent: Dynamic opt-in: signed, revocable, auditable consent records."""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.consent.api import routers
from tsunagu.consent.events import consumers
from tsunagu.consent.settings import ConsentSettings
from tsunagu.consent.store.models import event_tables, metadata
from tsunagu.service import ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    settings = settings or ConsentSettings()
    return create_service_app(
        ServiceSpec(
            settings=settings,
            title="Tsunagu consent",
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
    run_service(create_app, ConsentSettings())


if __name__ == "__main__":
    main()
