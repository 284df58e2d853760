"""12-factor settings shared by every service: one env prefix per service, secrets from files."""

from tsunagu.settings.base import (
    AuthSettings,
    EventSettings,
    KafkaSettings,
    ServiceSettings,
)

__all__ = ["AuthSettings", "EventSettings", "KafkaSettings", "ServiceSettings"]
