"""Events consent publishes and the handlers for the events it consumes.

Publishes: nothing of its own yet (platform diagnostics only).
Consumes: nothing of its own yet (platform diagnostics only).
"""

from tsunagu.events import EventTables
from tsunagu.service import ConsumerSpec


def consumers(tables: EventTables) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis)."""
    return []
