"""Settings of the ca service (environment prefix ``TSUNAGU_CA_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class CaSettings(ServiceSettings):
    service_name: ClassVar[str] = "ca"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_CA_", env_nested_delimiter="__", extra="ignore")

    port: int = 8102
