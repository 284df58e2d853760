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


def create_app(settings: IdpSettings | None = None) -> FastAPI:
    settings = settings or IdpSettings()
    return create_service_app(
        ServiceSpec(
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
    )


def main() -> None:
    run_service(create_app, IdpSettings())


if __name__ == "__main__":
    main()
