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


def service_spec(settings: BrokerSettings) -> ServiceSpec:
    return ServiceSpec(
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


def create_app(settings: BrokerSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or BrokerSettings()))


def main() -> None:
    """``tsunagu-broker`` serves; ``tsunagu-broker migrate`` only applies the migrations."""
    run_service(service_spec, BrokerSettings())


if __name__ == "__main__":
    main()
