"""Tsunagu broker: Data linkage: consented personal data exchange, push, open data, exchange log, metering."""

from pathlib import Path

from fastapi import FastAPI

from tsunagu.broker.api import routers
from tsunagu.broker.events import consumers
from tsunagu.broker.settings import BrokerSettings
from tsunagu.broker.store.models import event_tables, metadata
from tsunagu.service import ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {}


def create_app(settings: BrokerSettings | None = None) -> FastAPI:
    settings = settings or BrokerSettings()
    return create_service_app(
        ServiceSpec(
            settings=settings,
            title="Tsunagu broker",
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
    run_service(create_app, BrokerSettings())


if __name__ == "__main__":
    main()
