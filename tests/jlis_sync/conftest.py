"""jlis-sync in-process against a J-LIS sandbox served over real HTTP (uvicorn in a thread).

J-LIS pushes reach jlis-sync's real route through an ASGI transport; everything else (CRL, OCSP,
latest basic 4) crosses a real socket. Database: SQLite per test; Kafka: the session's tansu.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.fixtures.services import build_app, caller_auth, running, service_settings, sqlite_url
from tsunagu.auth import ProvisionedCredentials
from tsunagu.devstack.ports import free_port, wait_for_port
from tsunagu.jlis_sync.settings import JlisEndpoints
from tsunagu.sandbox.jlis import JlisSandbox, create_app
from tsunagu.sandbox.jlis.push import RetryPolicy
from tsunagu.settings import KafkaSettings

OPERATOR = "tsunagu"


class _Forward(httpx.AsyncBaseTransport):
    """Push deliveries from the sandbox to whatever jlis-sync app the test has running."""

    def __init__(self) -> None:
        self.target: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.target is not None, "no jlis-sync app to push to"
        return await self.target.handle_async_request(request)


@dataclass
class World:
    sandbox: JlisSandbox
    base_url: str
    forward: _Forward
    trust_dir: Path

    def person(self, name: str = "数字 太郎", address: str = "群馬県前橋市大手町二丁目12番1号") -> Any:
        return self.sandbox.create_card(name, address, date(1985, 6, 15), "1")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    port = free_port()
    forward = _Forward()
    sandbox = JlisSandbox(
        tmp_path / "jlis",
        base_url=f"http://127.0.0.1:{port}",
        push_async_transport=forward,
        retry_policy=RetryPolicy(max_attempts=3),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(None, sandbox=sandbox, push_interval_s=None),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "root.pem").write_bytes(sandbox.certificate_pem("root"))
    (trust / "signing.pem").write_bytes(sandbox.certificate_pem("signing"))
    try:
        yield World(sandbox, f"http://127.0.0.1:{port}", forward, trust)
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Sync:
    app: Any
    client: httpx.AsyncClient
    credentials: ProvisionedCredentials

    async def call(self, method: str, path: str, caller: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(
            method, path, auth=caller_auth(self.credentials, caller, "jlis-sync"), **kwargs
        )

    @property
    def service(self) -> Any:
        return self.app.state.runtime.resources

    async def events(self) -> list[dict[str, Any]]:
        import json

        from sqlalchemy import select

        runtime = self.app.state.runtime
        async with runtime.db.sessions() as session:
            rows = (
                await session.execute(
                    select(runtime.outbox.table.c.payload).order_by(runtime.outbox.table.c.seq)
                )
            ).scalars()
            return [e for e in (json.loads(r) for r in rows) if e["type"].startswith("tsunagu.jlis_sync.")]

    async def link(self, world: World, card: Any, user_number: str, consent: bool = True) -> httpx.Response:
        body = {"certificate_pem": card.signing_certificate}
        if consent:
            body["basic4_consent"] = world.sandbox.make_consent(card.card_id, OPERATOR)
        return await self.call("PUT", f"/internal/v1/links/{user_number}", "ca", json=body)


@pytest.fixture
def make_sync(
    world: World, tmp_path: Path, kafka_settings: KafkaSettings, credentials: ProvisionedCredentials
):  # type: ignore[no-untyped-def]
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Sync]:
        endpoints = JlisEndpoints(
            base_url=world.base_url,
            root_ca_file=world.trust_dir / "root.pem",
            signing_ca_file=world.trust_dir / "signing.pem",
            operator_id=OPERATOR,
        )
        overrides.setdefault("crl_interval_s", 3600)
        settings = service_settings(
            "jlis-sync",
            database_url=sqlite_url(tmp_path, "jlis-sync"),
            kafka=kafka_settings,
            credentials=credentials,
            jlis=endpoints,
            **overrides,
        )
        app = build_app("jlis-sync", settings)
        async with running(app) as client:
            world.forward.target = httpx.ASGITransport(app=app)
            await asyncio.sleep(0)  # let the first CRL cycle start against an empty J-LIS
            yield Sync(app, client, credentials)
        world.forward.target = None

    return make


@pytest.fixture
async def sync(make_sync) -> AsyncIterator[Sync]:  # type: ignore[no-untyped-def]
    async with make_sync() as instance:
        yield instance
