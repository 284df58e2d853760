"""Settings of the jlis-sync service (environment prefix ``TSUNAGU_JLIS_SYNC_``)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from tsunagu.settings import ServiceSettings


class JlisSyncSettings(ServiceSettings):
    service_name: ClassVar[str] = "jlis-sync"
    model_config = SettingsConfigDict(
        env_prefix="TSUNAGU_JLIS_SYNC_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 8106
