"""The chassis every service is built on: app factory, lifecycle, health, metrics, events, auth."""

from tsunagu.service.app import ConsumerSpec, ServiceSpec, create_service_app, run_service
from tsunagu.service.runtime import ServiceRuntime, get_runtime, pause

__all__ = [
    "ConsumerSpec",
    "ServiceRuntime",
    "ServiceSpec",
    "create_service_app",
    "get_runtime",
    "pause",
    "run_service",
]
