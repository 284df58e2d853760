"""Settings of the consent service (environment prefix ``TSUNAGU_CONSENT_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    service_name: ClassVar[str] = "consent"
    model_config = SettingsConfigDict(
        env_prefix="TSUNAGU_CONSENT_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 8104
