"""Settings of the idp service (environment prefix ``TSUNAGU_IDP_``)."""

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class IdpSettings(ServiceSettings):
    service_name: ClassVar[str] = "idp"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_IDP_", env_nested_delimiter="__", extra="ignore")

    port: int = 8103
    # The OpenID Provider's issuer identifier (https in production; every URL in discovery is
    # built from it). Relying parties compare it byte for byte.
    issuer: str = "http://127.0.0.1:8103"
    signer_url: str = "http://127.0.0.1:8101"
    ca_url: str = "http://127.0.0.1:8102"
    jlis_sync_url: str = "http://127.0.0.1:8106"
    # The consent service answers "is this claim released to this RP"; unset → every claim
    # beyond ``sub`` is withheld (deny by default).
    consent_url: str | None = None
    # HMAC key of pairwise subjects (≥ 32 bytes). Changing it changes every ``sub``: keep it in
    # a secret store (``TSUNAGU_IDP_PAIRWISE_SECRET_FILE``). Required outside dev/test.
    pairwise_secret: SecretStr | None = None
    # Lifetimes (seconds).
    authorization_code_ttl_s: int = Field(default=60, gt=0, le=600)
    access_token_ttl_s: int = Field(default=600, gt=0, le=86_400)
    id_token_ttl_s: int = Field(default=600, gt=0, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, gt=0)
    login_transaction_ttl_s: int = Field(default=300, gt=0, le=3600)
    par_ttl_s: int = Field(default=90, gt=0, le=600)
    session_ttl_s: int = Field(default=8 * 3600, gt=0)
    ciba_ttl_s: int = Field(default=300, gt=0, le=3600)
    ciba_interval_s: int = Field(default=5, gt=0, le=60)
    # Wallet approvals and client assertions: ``iat`` at most this old (and not in the future by
    # more than the same skew); their ``jti`` are remembered as long.
    assertion_max_age_s: int = Field(default=300, gt=0, le=3600)
    # Request objects (JAR) and PAR bodies.
    max_request_object_bytes: int = Field(default=16_384, gt=0)
    max_body_bytes: int = 65_536
    # Token endpoint, PAR, CIBA and login transactions: per-client-address budget (on top of the
    # chassis limit), requests per second and burst.
    sensitive_rate_per_s: float = Field(default=200.0, gt=0)
    sensitive_burst: float = Field(default=400.0, gt=0)
    # Cookies of the browser (session, login binding): ``__Host-`` names with ``Secure`` when the
    # issuer is https (always so in production). Browsers refuse ``Secure`` cookies over plain
    # http except on ``localhost``, so over http (dev, tests on 127.0.0.1) they are plain names
    # without ``Secure``. None → decided by the issuer's scheme; set to force either way.
    secure_cookies: bool | None = None
    # Back-channel logout: one POST per client of an ended session, retried with exponential
    # back-off (initial delay doubling up to the maximum) until delivered or the attempts run out.
    backchannel_logout_timeout_s: float = Field(default=5.0, gt=0, le=30)
    backchannel_logout_retry_initial_s: float = Field(default=5.0, gt=0)
    backchannel_logout_retry_max_s: float = Field(default=3600.0, gt=0)
    backchannel_logout_max_attempts: int = Field(default=10, gt=0)
