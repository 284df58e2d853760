"""Tsunagu IdP: OpenID Provider keyed on the user identification number; pairwise subjects; wallet login."""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.idp.api import routers
from tsunagu.idp.events import consumers
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.models import event_tables, metadata
from tsunagu.service import ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


def service_spec(settings: IdpSettings) -> ServiceSpec:
    return ServiceSpec(
        settings=settings,
        title="Tsunagu IdP",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables),
        grants=GRANTS,
    )


def create_app(settings: IdpSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or IdpSettings()))


def main() -> None:
    """``tsunagu-idp`` serves; ``tsunagu-idp migrate`` only applies the migrations."""
    run_service(service_spec, IdpSettings())


if __name__ == "__main__":
    main()
