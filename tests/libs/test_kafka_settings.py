"""Kafka client options built from settings (TLS needs an SSL context; aiokafka refuses otherwise)."""

from __future__ import annotations

import ssl

from tsunagu.events.kafka import _common, make_consumer, make_producer
from tsunagu.settings import KafkaSettings


async def test_tls_settings_give_a_verifying_ssl_context():
    settings = KafkaSettings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ca",
        sasl_password="pw",
    )
    options = _common(settings, "test")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert options["sasl_plain_password"] == "pw"
    make_producer(settings, "test")  # aiokafka accepts the options (it raised without a context)
    make_consumer(settings, "test", "group", "topic")


def test_plaintext_has_no_ssl_context():
    assert "ssl_context" not in _common(KafkaSettings(), "test")
