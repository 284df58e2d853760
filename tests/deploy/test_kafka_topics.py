"""The chart's Kafka topics Job script, run against a real (tansu) broker: creates, then is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.deploy.conftest import render_k8s
from tsunagu.devstack.tansu import TansuBroker

SCRIPT = render_k8s.CHART / "files" / "create_topics.py"


def _run(tansu: TansuBroker, topics: list[dict[str, object]]) -> list[dict[str, str]]:
    env = {
        **os.environ,
        "BOOTSTRAP_SERVERS": tansu.bootstrap_servers,
        "REPLICATION_FACTOR": "1",
        "TOPICS": json.dumps(topics),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.kafka
async def test_topics_job_creates_topics_and_is_idempotent(tansu: TansuBroker, unique: str) -> None:
    topics = [
        {"name": f"tsunagu.deploytest_{unique}.state", "partitions": 3, "retentionMs": -1},
        {"name": f"tsunagu.deploytest_{unique}.state.dlq", "partitions": 1, "retentionMs": -1},
    ]
    first = _run(tansu, topics)
    assert [(r["topic"], r["action"], r["retention.ms"]) for r in first] == [
        (t["name"], "created", "-1") for t in topics
    ]
    second = _run(tansu, topics)  # existing topics: configured, or left alone where unsupported
    assert [r["topic"] for r in second] == [t["name"] for t in topics]
    assert all(r["action"] in ("configured", "unchanged") for r in second)
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([t["name"] for t in topics])
    finally:
        await admin.close()
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    assert partitions == {t["name"]: t["partitions"] for t in topics}
