"""Settings of the broker service (environment prefix ``TSUNAGU_BROKER_``)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class BrokerSettings(ServiceSettings):
    service_name: ClassVar[str] = "broker"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_BROKER_", env_nested_delimiter="__", extra="ignore")

    port: int = 8105
    # The broker's resource identifier: parties' access tokens must carry it as ``aud``.
    resource: str = "http://127.0.0.1:8105"
    # Whose access tokens the broker accepts (its JWKS at ``{issuer}/jwks``) …
    idp_issuer: str = "http://127.0.0.1:8103"
    # … and where the idp's internal routes are (subject resolution, parties).
    idp_url: str = "http://127.0.0.1:8103"
    consent_url: str = "http://127.0.0.1:8104"
    signer_url: str = "http://127.0.0.1:8101"
    jlis_sync_url: str = "http://127.0.0.1:8106"
    provider_timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_provider_response_bytes: int = Field(default=262_144, gt=0)
    # The event-fed consent view answers only while its consumer caught up this recently;
    # otherwise the broker asks consent synchronously.
    consent_view_max_age_ms: int = Field(default=500, ge=0, le=60_000)
    # Access tokens may be this far past ``exp`` / before ``iat`` (clock skew).
    clock_skew_s: int = Field(default=30, ge=0, le=300)
    max_body_bytes: int = 262_144
    # Parties call from few addresses (their servers); per-client quotas come on top.
    rate_limit_per_s: float = 2000.0
    rate_limit_burst: float = 4000.0
    # Every exchange reads the consent view and joins a group commit; parties keep many in flight.
    database_pool_size: int = 30
    # Clients whose citizen tokens (scope broker:log) may read that citizen's whole exchange log:
    # the platform's own apps only, since the log names every other party the citizen deals with.
    log_clients: list[str] = Field(default_factory=list)
    # Each party's own budget of API calls (per client id, token bucket).
    client_rate_per_s: float = Field(default=500.0, gt=0)
    client_burst: float = Field(default=1000.0, gt=0)
    # Push (webhooks): per-attempt timeout, attempts before the dead-letter store, backoff
    # (initial × 2^n, capped, ±20 % jitter), how long a worker's claim lasts (a crashed worker's
    # deliveries are taken over after it), how often the queue is looked at without a wake-up.
    push_timeout_s: float = Field(default=5.0, gt=0, le=60)
    push_max_attempts: int = Field(default=8, ge=1, le=50)
    push_retry_initial_s: float = Field(default=2.0, gt=0)
    push_retry_max_s: float = Field(default=900.0, gt=0)
    push_lease_s: float = Field(default=60.0, gt=0)
    push_poll_s: float = Field(default=1.0, gt=0)
    push_max_value_bytes: int = Field(default=65_536, gt=0)
    push_max_subscriptions: int = Field(default=100, ge=1)  # per client
    # Values of dead deliveries are kept this long for redelivery, then cleared.
    push_dead_retention_s: float = Field(default=7 * 86_400.0, gt=0)
    # Metering: API calls are counted in memory and added to the database this often.
    usage_flush_s: float = Field(default=10.0, gt=0)
