"""Create the platform's Kafka topics (idempotent) and set their retention.

Run by the chart's pre-install/pre-upgrade Job with the service image's Python and aiokafka.
Input: TOPICS (JSON list of {name, partitions, retentionMs}), BOOTSTRAP_SERVERS, REPLICATION_FACTOR,
MIN_INSYNC_REPLICAS, and optionally SECURITY_PROTOCOL, SASL_MECHANISM, SASL_USERNAME,
SASL_PASSWORD_FILE. Existing topics keep their partition count (never shrunk); their retention is
set to the configured value.
"""

import asyncio
import json
import os
import ssl
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion

TOPIC_ALREADY_EXISTS = 36


def _say(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")


def _options() -> dict:
    options: dict = {"bootstrap_servers": os.environ["BOOTSTRAP_SERVERS"], "request_timeout_ms": 30000}
    protocol = os.environ.get("SECURITY_PROTOCOL", "PLAINTEXT")
    options["security_protocol"] = protocol
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    if os.environ.get("SASL_MECHANISM"):
        options["sasl_mechanism"] = os.environ["SASL_MECHANISM"]
        options["sasl_plain_username"] = os.environ.get("SASL_USERNAME")
        with open(os.environ["SASL_PASSWORD_FILE"], encoding="utf-8") as f:
            options["sasl_plain_password"] = f.read().strip()
    return options


async def main() -> int:
    topics = json.loads(os.environ["TOPICS"])
    replication = int(os.environ.get("REPLICATION_FACTOR", "3"))
    min_isr = os.environ.get("MIN_INSYNC_REPLICAS", "")
    admin = AIOKafkaAdminClient(**_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for t in topics:
            config = {"retention.ms": str(t["retentionMs"])}
            if min_isr:
                config["min.insync.replicas"] = min_isr
            if t["name"] in existing:
                try:
                    await admin.alter_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, t["name"], configs=config)]
                    )
                except IncompatibleBrokerVersion:
                    # Kafka-compatible brokers without AlterConfigs (tansu in dev): leave it be.
                    _say({"topic": t["name"], "action": "unchanged", "reason": "broker cannot alter configs"})
                    continue
                _say({"topic": t["name"], "action": "configured", **config})
            else:
                response = await admin.create_topics(
                    [NewTopic(t["name"], int(t["partitions"]), replication, topic_configs=config)]
                )
                for error in getattr(response, "topic_errors", []):
                    if error[1] not in (0, TOPIC_ALREADY_EXISTS):
                        raise SystemExit(f"creating {error[0]} failed: error code {error[1]} {error[2:]}")
                _say({"topic": t["name"], "action": "created", **config})
    finally:
        await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
