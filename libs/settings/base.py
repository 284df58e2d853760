"""The settings every service has; a service subclasses :class:`ServiceSettings`.

Each service reads its environment under its own prefix (``TSUNAGU_SIGNER_``,
``TSUNAGU_JLIS_SYNC_``...); nested groups use ``__`` (``TSUNAGU_CA_KAFKA__BOOTSTRAP_SERVERS``).
Any value may instead come from a file: ``<VARIABLE>_FILE=/run/secrets/x`` reads the file, which is
how Kubernetes and Docker secrets are mounted. A secret never needs to sit in the environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # TLS (SSL / SASL_SSL): the CA bundle to trust (None: the system store, which honours
    # SSL_CERT_FILE) and, for mutual TLS, this client's certificate and key.
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # tansu answers every fetch only after the full wait (see shared/NOTES.md): an event waits up
    # to this long per hop, and every consumer polls 1000/this times a second, idle or not. 20 ms
    # cost the idle dev stack 0.43 of its 2 cores (tansu 0.24); 50 ms, with the diagnostics groups
    # at 500 ms (``ConsumerSpec.fetch_max_wait_ms``), 0.18. Real Kafka answers as soon as records
    # arrive: there, raise it (500 is Kafka's default).
    fetch_max_wait_ms: int = 50
    # Consumer-group liveness. tansu delays a (re)join by about one to two session timeouts, so
    # the dev stack and tests shorten it; production Kafka is fine with the usual 10 s.
    request_timeout_ms: int = 15_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # Topics this service creates on start when missing (dev / single-broker defaults).
    default_partitions: int = 3
    replication_factor: int = 1


class EventSettings(BaseModel):
    relay_enabled: bool = True
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 0.2
    # After a commit wakes the relay, it waits this long so events committed meanwhile join the
    # same batch: under load, far fewer relay transactions and produce calls per event, for at
    # most this much more latency per event.
    relay_linger_s: float = Field(default=0.005, ge=0, le=1)
    consumers_enabled: bool = True
    consumer_max_attempts: int = 5
    consumer_backoff_initial_s: float = 0.2
    consumer_backoff_max_s: float = 5.0
    published_retention_days: int = 7


class AuthSettings(BaseModel):
    """Service-token identity of this service and the keys of the services it trusts."""

    private_key_file: Path | None = None
    trust_file: Path | None = None
    # Extra grants on top of the service's built-in policy: {"permission": ["caller", ...]}.
    extra_grants: dict[str, list[str]] = Field(default_factory=dict)


class EgressSettings(BaseModel):
    """Which addresses calls to party-given URLs may reach (``tsunagu.service.egress``)."""

    # None: allowed outside production (every dev/test party runs on 127.0.0.1), refused in it.
    allow_loopback: bool | None = None
    # Private networks parties may be on, e.g. ["10.20.0.0/16"] (a municipality's own providers).
    allowed_networks: list[str] = Field(default_factory=list)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError → a settings error at start
        return value


class _FileAwareEnvSource(EnvSettingsSource):
    """Environment source where ``<VARIABLE>_FILE`` supplies ``<VARIABLE>`` from a file.

    Works for nested groups too (``TSUNAGU_SIGNER_PKCS11__USER_PIN_FILE``). A variable set directly
    wins over its ``_FILE`` twin.
    """

    def _load_env_vars(self) -> Mapping[str, str | None]:
        variables = dict(super()._load_env_vars())
        prefix = (self.env_prefix or "").lower()
        if not prefix:
            return variables  # without a service prefix every *_FILE of the machine would match
        for name, path in list(variables.items()):
            if name.startswith(prefix) and name.endswith("_file") and path:
                target = name[: -len("_file")]
                if variables.get(target) is None:
                    try:
                        variables[target] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
                    except OSError as exc:
                        raise ValueError(f"{name.upper()} names an unreadable file: {exc.strerror}") from None
        return variables


class ServiceSettings(BaseSettings):
    """Settings common to all services. Subclasses set ``service_name`` and ``model_config``."""

    service_name: ClassVar[str] = "service"

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    environment: str = Field(default="dev", pattern="^(dev|test|production)$")
    database_url: str = ""
    # Connections the process may hold, opened as they are needed and then kept; a request finding
    # them all busy waits for one. (With 10 kept and as many again opened for bursts and closed
    # after, a process with a few dozen requests in flight opened and closed connections all the
    # time: 135 PostgreSQL backends started per 1,024 consent decisions, statements prepared again
    # on each.) ``Database.direct`` (hot single statements: every outbox commit) opens up to as many
    # again, as they are needed, and keeps them.
    database_pool_size: int = Field(default=20, ge=1, le=200)
    migrate_on_start: bool = True
    log_level: str = "INFO"
    # Garbage collector thresholds of a service process (gc.set_threshold). Python's (700, 10, 10)
    # made consent collect young objects ~11 times a second under load, each a pause of up to 5 ms
    # with every request in flight waiting; with the startup heap frozen, (20000, 20, 20) leaves a
    # few collections a minute (bench.consent: check p99 8.2 → 4.7 ms at 1,000/s).
    gc_thresholds: tuple[int, int, int] = (20_000, 20, 20)
    max_body_bytes: int = 1_048_576
    # Requests per second per client address (token bucket; 0 turns it off) and the burst allowed.
    rate_limit_per_s: float = 1000.0
    rate_limit_burst: float = 2000.0
    data_dir: Path = Path(".tsunagu/data")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FileAwareEnvSource(settings_cls), file_secret_settings)

    def model_post_init(self, context: Any, /) -> None:
        if not self.database_url:
            # Embedded default: one SQLite file per service.
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"

    @property
    def topic_prefix(self) -> str:
        return f"tsunagu.{self.service_name.replace('-', '_')}"
