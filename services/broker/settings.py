"""Settings of the broker service (environment prefix ``TSUNAGU_BROKER_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class BrokerSettings(ServiceSettings):
    service_name: ClassVar[str] = "broker"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_BROKER_", env_nested_delimiter="__", extra="ignore")

    port: int = 8105
