"""Settings of the signer service (environment prefix ``TSUNAGU_SIGNER_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class SignerSettings(ServiceSettings):
    service_name: ClassVar[str] = "signer"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_SIGNER_", env_nested_delimiter="__", extra="ignore")

    port: int = 8101
