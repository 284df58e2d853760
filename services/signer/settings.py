"""Settings of the signer service (environment prefix ``TSUNAGU_SIGNER_``)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tsunagu.pkcs11 import Pkcs11Settings
from tsunagu.settings import ServiceSettings


class SignerSettings(ServiceSettings):
    service_name: ClassVar[str] = "signer"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_SIGNER_", env_nested_delimiter="__", extra="ignore")

    port: int = 8101
    # Without it the service starts, refuses to sign (503) and reports itself not ready.
    pkcs11: Pkcs11Settings | None = None
    rotation_grace_s: int = Field(default=86_400, ge=0)
    max_batch_items: int = Field(default=1000, ge=1, le=10_000)
    max_payload_bytes: int = Field(default=65_536, ge=32)
    # Signing a 1000-item batch takes a large body; the chassis limit applies to every route.
    max_body_bytes: int = 16 * 1_048_576
