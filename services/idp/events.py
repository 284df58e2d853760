"""Events idp publishes and the handlers for the events it consumes.

Publishes (``libs/events/schemas/idp.py``): ``tsunagu.idp.login.succeeded`` / ``.failed`` and
``tsunagu.idp.session.ended`` keyed by user number; ``tsunagu.idp.client.*`` keyed by client id.
Consumes: ``tsunagu.ca.certificate.revoked`` (the certificate's sessions end) and
``tsunagu.jlis_sync.resident.updated`` (released claims changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tsunagu.events import EventTables
from tsunagu.service import ConsumerSpec


@dataclass
class Late:
    """The domain services, known only once the app's resources are up."""

    services: Any = None


def consumers(tables: EventTables, late: Late) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis)."""
    return []
