"""Settings of the idp service (environment prefix ``TSUNAGU_IDP_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class IdpSettings(ServiceSettings):
    service_name: ClassVar[str] = "idp"
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_IDP_", env_nested_delimiter="__", extra="ignore")

    port: int = 8103
