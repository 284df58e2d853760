"""Settings of the consent service (environment prefix ``TSUNAGU_CONSENT_``)."""

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class DashboardSettings(BaseModel):
    """The citizen dashboard (``/dashboard``): an OpenID Connect relying party of the idp. Off
    (every dashboard route answers 404) until ``issuer``, ``client_id`` and ``redirect_uri`` are set.
    The client needs ``user_number_legal_basis`` at the idp: the ID token's ``user_number`` says
    whose dashboard it is."""

    issuer: str | None = None  # the idp, e.g. http://127.0.0.1:8103
    client_id: str | None = None
    # private_key_jwt with this EC P-256 key (PEM), else client_secret_basic with the secret.
    client_key_file: Path | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None  # …/dashboard/callback on this service's public address
    session_ttl_s: int = Field(default=3600, gt=0, le=86_400)
    login_ttl_s: int = Field(default=600, gt=0, le=3600)
    # How long a change the dashboard asks for waits for the wallet's signature.
    change_ttl_s: int = Field(default=900, gt=0, le=86_400)
    # Per client address, on login and callback (each login start writes a row).
    login_rate_per_s: float = Field(default=2.0, gt=0)
    login_burst: float = Field(default=30.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id and self.redirect_uri)


class ConsentSettings(ServiceSettings):
    service_name: ClassVar[str] = "consent"
    model_config = SettingsConfigDict(
        env_prefix="TSUNAGU_CONSENT_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 8104
    signer_url: str = "http://127.0.0.1:8101"
    ca_url: str = "http://127.0.0.1:8102"
    # The dashboard's exchange log page reads the broker (unset: the page says it is unavailable).
    broker_url: str | None = None
    # A decision's signing time (and a wallet query's iat) may be at most this old; nonces and
    # query jti are refused for ever / for as long.
    max_signature_age_s: int = Field(default=300, gt=0, le=3600)
    clock_skew_s: int = Field(default=30, ge=0, le=300)
    # How long a consent request waits for the citizen's answer, unless the request says less.
    request_ttl_s: int = Field(default=30 * 86_400, gt=0)
    max_validity_days: int = Field(default=5 * 365, gt=0, le=10 * 365)
    # People whose decision items are kept in memory for effective-consent checks (0: none; every
    # check is a query). Kept only while change notifications are heard (domain/effective_cache.py).
    effective_cache_people: int = Field(default=100_000, ge=0)
    max_body_bytes: int = 65_536
    # idp and broker check consent on every release; their calls come from few addresses.
    rate_limit_per_s: float = 5000.0
    rate_limit_burst: float = 10000.0
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
