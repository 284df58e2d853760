"""Every event contract of the platform, one module per producing service.

Consumers depend on these schemas, never on the producer's code. Import :data:`registry`.
"""

from tsunagu.events.registry import EventRegistry

registry = EventRegistry()

# Schema modules register themselves on import; keep this list complete.
from tsunagu.events.schemas import broker, ca, consent, idp, jlis_sync, platform, signer  # noqa: E402

__all__ = ["broker", "ca", "consent", "idp", "jlis_sync", "platform", "registry", "signer"]
