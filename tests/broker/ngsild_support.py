"""NGSI-LD tests on the real stack: the dev stack's idp (as processes) issues the parties' access
tokens (client_credentials, RFC 9068 JWT, ``resource`` = the broker), and each test module gets a
broker app in-process on its own PostgreSQL database (JSONB) — the NGSI-LD store needs
PostgreSQL. Notifications go to a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.fixtures.services import build_app, running, table_rows
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.broker.settings import BrokerSettings
from tsunagu.devstack.postgres import scratch_database
from tsunagu.devstack.stack import RunningStack
from tsunagu.settings import KafkaSettings

RESOURCE = "https://broker.ngsild.test"
ENTITIES = "/ngsi-ld/v1/entities"
SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
NGSI_LD_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


@dataclass
class Party:
    client_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class NgsiLdHarness:
    app: Any
    client: httpx.AsyncClient
    stack: RunningStack
    tenant: str = field(default_factory=lambda: f"city-{secrets.token_hex(3)}")

    def service_auth(self, caller: str, audience: str) -> httpx.Auth:
        credentials = self.stack.config.state_dir / "credentials"
        return ServiceTokenAuth(
            ServiceTokenIssuer(caller, load_private_key(credentials / f"{caller}.key.pem")), audience
        )

    async def party(self, scope: str = "ngsi-ld:read ngsi-ld:write") -> Party:
        """A new idp client of the tenant (client_credentials) and an access token for the broker."""
        async with httpx.AsyncClient(base_url=self.stack.urls["idp"], timeout=30) as idp:
            admin = self.service_auth("operator", "idp")
            created = await idp.post(
                "/admin/v1/tenants",
                json={"id": self.tenant, "name_ja": "つなぐ市", "name_en": "Tsunagu City"},
                auth=admin,
            )
            assert created.status_code in (201, 409), created.text
            registered = await idp.post(
                f"/admin/v1/tenants/{self.tenant}/clients",
                json={
                    "client_name": "City OS",
                    "client_name#ja": "都市OS",
                    "client_name#en": "City OS",
                    "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "scope": scope,
                },
                auth=admin,
            )
            assert registered.status_code == 201, registered.text
            client = registered.json()
            token = await idp.post(
                "/token",
                data={"grant_type": "client_credentials", "scope": scope, "resource": RESOURCE},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert token.status_code == 200, token.text
            return Party(client["client_id"], token.json()["access_token"])

    async def dataset(
        self,
        dataset_id: str,
        types: list[str],
        access: str | list[str],
        writers: list[str],
        expect: int = 200,
    ) -> httpx.Response:
        response = await self.client.put(
            f"/internal/v1/tenants/{self.tenant}/datasets/{dataset_id}",
            json={
                "label_ja": "データセット",
                "label_en": "A dataset",
                "entity_types": types,
                "access": access,
                "writers": writers,
            },
            auth=self.service_auth("operator", "broker"),
        )
        assert response.status_code == expect, response.text
        return response

    async def count(self, table: str) -> int:
        from tsunagu.broker.store import models

        async with self.app.state.runtime.db.sessions() as session:
            statement = select(func.count()).select_from(getattr(models, table))
            return int((await session.execute(statement)).scalar_one())

    async def snapshot(self) -> dict[str, int]:
        tables = ("ngsild_entity", "ngsild_subscription", "ngsild_notification", "ngsild_dataset")
        return {table: await self.count(table) for table in tables}


def broker_settings(stack: RunningStack, database_url: str, **overrides: Any) -> BrokerSettings:
    credentials = stack.config.state_dir / "credentials"
    return BrokerSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=stack.broker.bootstrap_servers, fetch_max_wait_ms=20),
        auth={"private_key_file": credentials / "broker.key.pem", "trust_file": credentials / "trust.json"},
        environment="test",
        resource=RESOURCE,
        idp_issuer=stack.urls["idp"],
        idp_url=stack.urls["idp"],
        signer_url=stack.urls["signer"],
        consent_url=stack.urls["consent"],
        jlis_sync_url=stack.urls["jlis-sync"],
        **overrides,
    )


@asynccontextmanager
async def ngsild_broker(stack: RunningStack, database_url: str | None = None) -> AsyncIterator[NgsiLdHarness]:
    """A broker app on ``database_url`` (default: a database of its own, dropped afterwards)."""
    if database_url is None:
        async with scratch_database("tsunagu_ngsild") as url, ngsild_broker(stack, url) as harness:
            yield harness
        return
    app = build_app("broker", broker_settings(stack, database_url))
    async with running(app) as client:
        yield NgsiLdHarness(app, client, stack)


async def rows_when(
    harness: NgsiLdHarness,
    table: Any,
    condition: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 15.0,
) -> list[dict[str, Any]]:
    """The table's rows once ``condition`` holds for them (a background loop is writing them)."""
    async with asyncio.timeout(timeout_s):
        while not condition(rows := await table_rows(harness.app, table)):  # noqa: ASYNC110 - the DB is what changes
            await asyncio.sleep(0.05)
    return rows


@pytest.fixture(scope="module")
async def ngsild(ngsild_platform: RunningStack) -> AsyncIterator[NgsiLdHarness]:
    async with ngsild_broker(ngsild_platform) as harness:
        yield harness


class Receiver:
    """A loopback HTTP server that records the notifications POSTed to it (status ``answer``)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answer = 204
        self.arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.answer
                if status < 300:
                    receiver.received.append((dict(self.headers), json.loads(body)))
                    loop.call_soon_threadsafe(receiver.arrived.set)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    async def wait(self, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return [body for _headers, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The NGSI-LD problem of a refused request (``kind``: BadRequestData, ResourceNotFound…)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    expected = kind if kind.startswith("urn:") else NGSI_LD_ERRORS + kind
    assert body["type"] == expected, body
    return body
