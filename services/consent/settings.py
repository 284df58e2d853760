"""Settings of the consent service (environment prefix ``TSUNAGU_CONSENT_``)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    service_name: ClassVar[str] = "consent"
    model_config = SettingsConfigDict(
        env_prefix="TSUNAGU_CONSENT_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 8104
    signer_url: str = "http://127.0.0.1:8101"
    ca_url: str = "http://127.0.0.1:8102"
    # A decision's signing time (and a wallet query's iat) may be at most this old; nonces and
    # query jti are refused for ever / for as long.
    max_signature_age_s: int = Field(default=300, gt=0, le=3600)
    clock_skew_s: int = Field(default=30, ge=0, le=300)
    # How long a consent request waits for the citizen's answer, unless the request says less.
    request_ttl_s: int = Field(default=30 * 86_400, gt=0)
    max_validity_days: int = Field(default=5 * 365, gt=0, le=10 * 365)
    max_body_bytes: int = 65_536
    # idp and broker check consent on every release; their calls come from few addresses.
    rate_limit_per_s: float = 5000.0
    rate_limit_burst: float = 10000.0
