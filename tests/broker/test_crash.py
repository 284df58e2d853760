"""Killed (SIGKILL) in the middle of an exchange, a broker process restarts with every exchange
either fully recorded (log row and its event) or not at all, and serves again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.broker.conftest import ALLERGY, BrokerHarness
from tsunagu.devstack.ports import free_port_block, wait_for_port
from tsunagu.devstack.postgres import scratch_database
from tsunagu.devstack.stack import _service_env
from tsunagu.wallet import Enrolled


@contextmanager
def broker_process(
    broker: BrokerHarness, database_url: str, port: int, log: Path, failpoint: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    stack = broker.stack
    env = _service_env(stack.config, "broker", port, stack.broker.bootstrap_servers, stack.token)
    env["TSUNAGU_BROKER_DATABASE_URL"] = database_url
    env["TSUNAGU_BROKER_RESOURCE"] = f"http://127.0.0.1:{port}"
    # Its own database, no consumers: it shares the stack's consumer groups otherwise. Without a
    # view it asks consent for every check (the fallback path).
    env["TSUNAGU_BROKER_EVENTS__CONSUMERS_ENABLED"] = "false"
    env.pop("TSUNAGU_FAILPOINTS", None)
    if failpoint:
        env["TSUNAGU_FAILPOINTS"] = f"{failpoint}=kill"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tsunagu.broker.app"],
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        try:
            wait_for_port(port, timeout_s=180)  # a loaded CI machine starts processes slowly
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(15)


async def _recorded(database_url: str) -> tuple[list[str], list[str]]:
    """Exchange ids in the log, and exchange ids of the broker's outbox events."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        rows = [r["id"] for r in await connection.fetch("SELECT id FROM exchange ORDER BY id")]
        events = [
            r["exchange_id"]
            for r in await connection.fetch(
                "SELECT convert_from(payload, 'UTF8')::json->'data'->>'exchange_id' AS exchange_id "
                "FROM event_outbox WHERE topic = 'tsunagu.broker.exchange' ORDER BY 1"
            )
        ]
    finally:
        await connection.close()
    return rows, events


@pytest.mark.parametrize("failpoint", ["broker.exchange.before_log", "broker.exchange.after_log"])
async def test_killed_mid_exchange_nothing_is_half_written(
    broker: BrokerHarness, citizen: Enrolled, tmp_path: Path, failpoint: str
):
    records, provider, endpoint = await broker.provider("records-crash")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: {"allergens": ["小麦"]}}
    hospital = await broker.party("hospital-crash")
    await broker.decide(citizen, hospital, {ALLERGY: True})
    sub = await broker.sub_of(hospital, citizen)
    port = free_port_block(1)
    url = f"http://127.0.0.1:{port}"
    provider.broker_url = url  # requests now come from (and are signed as) this broker
    token = await broker.token(hospital, "broker:exchange", resource=url)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"sub": sub, "items": [ALLERGY], "purpose": "treatment"}
    async with scratch_database("tsunagu_broker_crash") as database_url:
        # The catalog lives in the broker's database: define the item in this one too.
        with broker_process(broker, database_url, port, tmp_path / "broker.log", failpoint) as process:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                defined = await client.put(
                    f"/internal/v1/tenants/ebetsu/items/{ALLERGY}",
                    json={
                        "label_ja": "アレルギー",
                        "label_en": "Allergies",
                        "sensitivity": "special-care",
                        "schema": {"type": "object", "properties": {"allergens": {"type": "array"}}},
                        "providers": [{"client_id": records.client_id, "endpoint": endpoint}],
                    },
                    auth=broker.auth("operator", "broker"),
                )
                assert defined.status_code == 200, defined.text
                with pytest.raises(httpx.TransportError):
                    await client.post("/v1/exchanges", json=body, headers=headers)
            assert process.wait(30) == -signal.SIGKILL
        rows, events = await _recorded(database_url)
        assert rows == events  # a row and its event, or neither
        assert len(rows) == (1 if failpoint.endswith("after_log") else 0)

        with broker_process(broker, database_url, port, tmp_path / "broker.log", None):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                response = await client.post("/v1/exchanges", json=body, headers=headers)
                assert response.status_code == 200, response.text
                assert response.json()["items"] == {ALLERGY: {"allergens": ["小麦"]}}
        rows_after, events_after = await _recorded(database_url)
        assert rows_after == events_after and len(rows_after) == len(rows) + 1
