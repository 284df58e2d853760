"""aiokafka clients configured from :class:`tsunagu.settings.KafkaSettings`, and topic creation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from tsunagu.settings import KafkaSettings

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


def _common(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        # aiokafka refuses TLS without a context; verification of the broker is always on.
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


def make_producer(settings: KafkaSettings, client_id: str, *, idempotent: bool = False) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas. aiokafka keeps one in-flight batch per
    partition, so per-key order survives retries even without the idempotent producer (which
    tansu refuses, see shared/NOTES.md)."""
    return AIOKafkaProducer(
        **_common(settings, client_id),
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=2,
        max_batch_size=1_048_576,
        request_timeout_ms=settings.request_timeout_ms,
    )


def make_consumer(
    settings: KafkaSettings, client_id: str, group_id: str | None, *topics: str
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **_common(settings, client_id),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_records=500,
        isolation_level="read_uncommitted",
    )


async def ensure_topics(
    settings: KafkaSettings, topics: Mapping[str, int], client_id: str = "tsunagu-admin"
) -> None:
    """Create the topics that do not exist yet (name → partitions)."""
    if not topics:
        return
    admin = AIOKafkaAdminClient(**_common(settings, client_id))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=settings.replication_factor)
            for name, partitions in sorted(topics.items())
            if name not in existing
        ]
        if not missing:
            return
        response = await admin.create_topics(missing)
        for name, code, *_ in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {name}: error code {code}")
        log.info("created topics", extra={"topics": [t.name for t in missing]})
    finally:
        await admin.close()


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"
