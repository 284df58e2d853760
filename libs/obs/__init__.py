"""Observability: JSON logs with request ids, Prometheus metrics, failpoints for crash tests."""

from tsunagu.obs.context import current_request_id, request_id_scope
from tsunagu.obs.failpoints import failpoint
from tsunagu.obs.logging import configure_logging
from tsunagu.obs.metrics import GcPauses, Metrics

__all__ = ["GcPauses", "Metrics", "configure_logging", "current_request_id", "failpoint", "request_id_scope"]
