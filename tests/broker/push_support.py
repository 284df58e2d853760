"""Webhook receivers for the push tests: a subscriber's loopback endpoint that verifies each push
with the broker's JWKS, and can fail, hold or count requests as a test needs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from joserfc import jws
from joserfc.jwk import KeySet

from tests.broker.conftest import PUSH_TEST_ENV, BrokerHarness, Party
from tsunagu.devstack.ports import free_port_block
from tsunagu.devstack.stack import RunningStack, _service_env
from tsunagu.wallet import Enrolled, SandboxCard, enroll

PUSH_TYP = "tsunagu-data-push+jwt"


@dataclass
class Receiver:
    """One subscriber's webhook. ``status`` answers each request (after ``hold`` is set, when
    given); ``fail_first`` requests get 503 first. ``attempts`` has every verified request,
    ``received`` the ones answered 2xx."""

    client_id: str
    broker_url: str
    status: int = 200
    fail_first: int = 0
    hold: asyncio.Event | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _keys: KeySet | None = None

    async def _verify(self, token: str) -> dict[str, Any]:
        if self._keys is None:
            async with httpx.AsyncClient() as client:
                self._keys = KeySet.import_key_set((await client.get(f"{self.broker_url}/v1/jwks")).json())
        verified = jws.deserialize_compact(token, self._keys, algorithms=["ES256", "RS256"])
        assert verified.headers()["typ"] == PUSH_TYP
        claims: dict[str, Any] = json.loads(verified.payload)
        assert claims["aud"] == self.client_id and claims["iss"] == self.broker_url
        assert claims["exp"] > time.time()
        return claims

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/jwt"
        claims = await self._verify(await request.text())
        self.attempts.append(claims)
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status = 503 if len(self.attempts) <= self.fail_first else self.status
        if 200 <= status < 300:
            self.received.append(claims)
        return web.Response(status=status)


async def serve_receiver(broker: BrokerHarness, party: Party) -> Receiver:
    receiver = Receiver(party.client_id, broker.broker_url)
    application = web.Application(client_max_size=262_144)
    application.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    port = free_port_block(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    broker.runners.append(runner)
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return receiver


async def subscribe(
    broker: BrokerHarness, party: Party, items: list[str], purpose: str, url: str
) -> httpx.Response:
    return await broker.broker.post(
        "/v1/subscriptions", json={"items": items, "purpose": purpose, "url": url}, headers=party.bearer
    )


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def deliveries(broker: BrokerHarness, party: Party, state: str | None = None) -> list[dict[str, Any]]:
    params = {"state": state} if state else {}
    response = await broker.broker.get("/v1/deliveries", params=params, headers=party.bearer)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


async def event_about(
    stack: RunningStack, topic: str, event_type: str, field: str, value: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    """The first event of ``event_type`` on ``topic`` whose ``data[field] == value``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.broker.bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event: dict[str, Any] = json.loads(record.value)
                    if event["type"] == event_type and event["data"].get(field) == value:
                        return event
    finally:
        await consumer.stop()
    raise AssertionError(f"no {event_type} with {field}={value}")


async def citizen_with_card(stack: RunningStack, name: str) -> tuple[Enrolled, str]:
    """A citizen enrolled with a sandbox card (basic-4 consent given); and the J-LIS person id,
    to move them."""
    async with (
        httpx.AsyncClient(base_url=stack.jlis_url, timeout=30) as jlis,
        httpx.AsyncClient(base_url=stack.urls["ca"], timeout=30) as ca,
    ):
        response = await jlis.post(
            "/cards",
            json={"name": name, "address": "北海道江別市高砂町6番地", "birth_date": "1980-01-02", "sex": "1"},
        )
        response.raise_for_status()
        card = response.json()
        return await enroll(ca, SandboxCard(jlis, card["card_id"])), str(card["person_id"])


def restart_broker(stack: RunningStack) -> None:
    """SIGKILL the broker's process group and start it again as the stack did (same database,
    port and settings); returns once it is ready."""
    old = stack.processes["broker"]
    os.killpg(old.pid, signal.SIGKILL)
    old.wait()
    config = stack.config
    port = int(stack.urls["broker"].rsplit(":", 1)[1])
    env = {
        **_service_env(config, "broker", port, stack.broker.bootstrap_servers, stack.token),
        **PUSH_TEST_ENV,
    }
    log = open(config.state_dir / "logs" / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    stack.processes["broker"] = subprocess.Popen(
        [sys.executable, "-m", "tsunagu.broker.app"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert stack.processes["broker"].poll() is None, "the broker exited after restart"
        try:
            if httpx.get(f"{stack.urls['broker']}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the broker did not become ready after restart")
