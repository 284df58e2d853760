"""Tsunagu CA.

Identity proofing with the My Number Card, user identification numbers, phone certificates, CRL and OCSP.
"""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.ca.api import routers
from tsunagu.ca.events import consumers
from tsunagu.ca.settings import CaSettings
from tsunagu.ca.store.models import event_tables, metadata
from tsunagu.service import ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


def service_spec(settings: CaSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu CA",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
    )


def create_app(settings: CaSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or CaSettings()))


def main() -> None:
    """``tsunagu-ca`` serves; ``tsunagu-ca migrate`` only applies the migrations."""
    run_service(service_spec, CaSettings())


if __name__ == "__main__":
    main()
