"""HTTP clients for internal (service-to-service) calls, authenticated with service tokens."""

from tsunagu.clients.diagnostics import DiagnosticsClient
from tsunagu.clients.internal import InternalClient, UpstreamError

__all__ = ["DiagnosticsClient", "InternalClient", "UpstreamError"]
