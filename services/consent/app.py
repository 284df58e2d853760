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
    )


def create_app(settings: ConsentSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or ConsentSettings()))


def main() -> None:
    """``tsunagu-consent`` serves; ``tsunagu-consent migrate`` only applies the migrations."""
    run_service(service_spec, ConsentSettings())


if __name__ == "__main__":
    main()
