"""Settings of the ca service (environment prefix ``TSUNAGU_CA_``)."""

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class JpkiTrust(BaseModel):
    """The J-LIS certificates a card's signing certificate must chain to (files, never fetched)."""

    root_ca_file: Path | None = None
    signing_ca_file: Path | None = None


class CaSettings(ServiceSettings):
    service_name: ClassVar[str] = "ca"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_CA_", env_nested_delimiter="__", extra="ignore")

    port: int = 8102
    # Where relying parties reach the CA: the base of the CRL, OCSP and caIssuers URLs put in
    # certificates. Changing it only affects certificates issued afterwards.
    public_base_url: str = "http://127.0.0.1:8102"
    signer_url: str = "http://127.0.0.1:8101"
    jlis_sync_url: str = "http://127.0.0.1:8106"
    jpki: JpkiTrust = Field(default_factory=JpkiTrust)
    organization: str = "Tsunagu"
    # Our certificate policy for the signing certificate (my電子証明書) and the authentication /
    # per-app certificates (my認証). Placeholders under a private arc until one is registered.
    signing_policy_oid: str = "1.3.6.1.4.1.99999.1.1"
    authentication_policy_oid: str = "1.3.6.1.4.1.99999.1.2"
    end_entity_validity_days: int = Field(default=5 * 365, gt=0, le=10 * 365)
    challenge_ttl_s: int = Field(default=300, gt=0, le=3600)
    # After the card's proof, the phone has this long to fetch its two certificates.
    enrollment_completion_s: int = Field(default=1800, gt=0, le=86_400)
    # Signed requests from the wallet (iat) must be this fresh; their jti is remembered as long.
    signed_request_max_age_s: int = Field(default=300, gt=0, le=3600)
    # CRLs: valid for crl_validity_s, regenerated on change and when half of it has passed.
    crl_validity_s: int = Field(default=86_400, ge=600)
    crl_check_interval_s: float = Field(default=30.0, gt=0)
    # OCSP: pre-signed responses valid for ocsp_validity_s, re-signed when less than
    # ocsp_refresh_before_s remains. A request with a nonce gets a fresh response echoing it when
    # ocsp_echo_nonce is true (RFC 9654 lets a responder ignore it; pre-signed answers are faster).
    ocsp_validity_s: int = Field(default=86_400, ge=300)
    ocsp_refresh_before_s: int = Field(default=43_200, ge=60)
    ocsp_refresh_interval_s: float = Field(default=10.0, gt=0)
    ocsp_echo_nonce: bool = True
    max_body_bytes: int = 65_536
