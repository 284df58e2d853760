"""Settings of the jlis-sync service (environment prefix ``TSUNAGU_JLIS_SYNC_``)."""

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class JlisEndpoints(BaseModel):
    """Where J-LIS answers and which of its certificates we trust (files, never fetched)."""

    base_url: str = "http://127.0.0.1:8190"
    signing_crl_path: str = "/crl/signing.crl"
    ocsp_path: str = "/ocsp"
    basic4_path: str = "/basic4"
    root_ca_file: Path | None = None  # J-LIS root: anchors the push certificate
    signing_ca_file: Path | None = None  # issuer of card signing certificates and of the CRL
    operator_id: str = "tsunagu"  # who we are to J-LIS (named in the citizens' basic-4 consents)
    timeout_s: float = 30.0


class JlisSyncSettings(ServiceSettings):
    service_name: ClassVar[str] = "jlis-sync"
    model_config = SettingsConfigDict(
        env_prefix="TSUNAGU_JLIS_SYNC_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 8106
    jlis: JlisEndpoints = Field(default_factory=JlisEndpoints)
    crl_interval_s: float = Field(default=3600.0, gt=0)  # J-LIS publishes daily; we look hourly
    push_max_age_s: int = Field(default=86_400, gt=0)  # older notifications are refused as replays
    max_push_bytes: int = 65_536
