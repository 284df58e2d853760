"""Events consent publishes and the handlers for the events it consumes.

Publishes (``libs/events/schemas/consent.py``): ``tsunagu.consent.request.created`` on
``tsunagu.consent.request`` and ``tsunagu.consent.decision.recorded`` on
``tsunagu.consent.decision`` (with the full signed statement and the receipt), keyed by user
identification number, each in the transaction of the change it announces.
Consumes: nothing of its own yet (platform diagnostics only).
"""

from tsunagu.events import EventTables
from tsunagu.service import ConsumerSpec


def consumers(tables: EventTables) -> list[ConsumerSpec]:
    """The consumer groups of this service (diagnostics is added by the chassis)."""
    return []
