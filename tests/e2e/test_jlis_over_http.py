"""J-LIS → platform across real processes: the sandbox pushes a move to the jlis-sync process, the
next CRL lists it again, and Kafka carries exactly one resident.updated for the person."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.demo_jlis import run_jlis_chapter
from tsunagu.devstack.ports import free_port_block, free_port_outside
from tsunagu.devstack.stack import StackConfig, start_stack
from tsunagu.events import replay_topic
from tsunagu.settings import KafkaSettings


async def test_a_move_reaches_kafka_exactly_once_through_push_and_crl(tmp_path: Path):
    base = free_port_block()
    kafka = free_port_outside(base)
    config = StackConfig(
        state_dir=tmp_path / "stack",
        kafka_port=kafka,
        base_port=base,
        jlis_port=free_port_outside(base, kafka),
        crl_interval_s=1.0,
    )
    stack = await asyncio.to_thread(start_stack, config, lambda _message: None)
    credentials = config.state_dir / "credentials"
    try:
        ok, user_number = await run_jlis_chapter(
            stack.jlis_url, stack.urls["jlis-sync"], credentials, lambda _m: None
        )
        assert ok
        operator = ServiceTokenAuth(
            ServiceTokenIssuer("operator", load_private_key(credentials / "operator.key.pem")), "jlis-sync"
        )
        async with httpx.AsyncClient(base_url=stack.urls["jlis-sync"], auth=operator, timeout=30) as client:
            crl = (await client.post("/internal/v1/crl/sync")).json()  # the CRL now lists the old serial too
        assert crl["status"] in {"applied", "already-applied", "not-modified"}
        await asyncio.sleep(2)  # at least one periodic CRL cycle as well
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{config.kafka_port}")
        events = [r.envelope() async for r in replay_topic(kafka, "tsunagu.jlis_sync.resident")]
    finally:
        await asyncio.to_thread(stack.stop)
    mine = [e for e in events if e.subject == user_number]
    assert [e.type for e in mine] == ["tsunagu.jlis_sync.resident.updated"]
    assert mine[0].data["changed_fields"] == ["address"] and mine[0].data["basic4_available"] is True
    assert mine[0].partitionkey == user_number
