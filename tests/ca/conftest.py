"""The CA on the real stack: signer (SoftHSM2 token), jlis-sync, the J-LIS sandbox and tansu run as
processes (``tsunagu dev up``'s code, once per session); each test gets its own CA app in-process
(database of its own, SQLite or PostgreSQL) that talks to them over HTTP and reuses the CA keys the
stack's ceremony made in the HSM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.services import build_app, outbox_events, running, table_rows
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.ca.settings import CaSettings
from tsunagu.devstack.ports import free_port_block, free_port_outside
from tsunagu.devstack.stack import RunningStack, StackConfig, start_stack
from tsunagu.settings import KafkaSettings
from tsunagu.wallet import SandboxCard

CA_BASE = "http://ca.test"


@contextmanager
def started_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = free_port_block()
    kafka = free_port_outside(base)
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("ca-stack"),
        kafka_port=kafka,
        base_port=base,
        jlis_port=free_port_outside(base, kafka),
        crl_interval_s=3600.0,
    )
    stack = start_stack(config, lambda _message: None)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with started_stack(tmp_path_factory) as stack:
        yield stack


def _auth(stack: RunningStack, caller: str, audience: str) -> httpx.Auth:
    credentials = stack.config.state_dir / "credentials"
    return ServiceTokenAuth(
        ServiceTokenIssuer(caller, load_private_key(credentials / f"{caller}.key.pem")), audience
    )


def stack_keys(platform: RunningStack) -> dict[str, str]:
    """The signer key ids of the stack CA's root, issuing CA and OCSP responder (active, for ca)."""
    response = httpx.get(
        f"{platform.urls['ca']}/admin/v1/authorities", auth=_auth(platform, "operator", "ca"), timeout=30
    )
    response.raise_for_status()
    return {authority["kind"]: authority["key_id"] for authority in response.json()}


@pytest.fixture(scope="package")
def ca_keys(platform: RunningStack) -> dict[str, str]:
    return stack_keys(platform)


@dataclass
class CaHarness:
    app: Any
    client: httpx.AsyncClient  # anonymous, as the wallet calls
    stack: RunningStack
    jlis: httpx.AsyncClient

    def auth(self, caller: str) -> httpx.Auth:
        return _auth(self.stack, caller, "ca")

    @property
    def services(self) -> Any:
        return self.app.state.runtime.resources

    async def new_card(
        self, name: str = "数字 花子", address: str = "群馬県前橋市大手町一丁目1番1号"
    ) -> tuple[SandboxCard, dict[str, Any]]:
        response = await self.jlis.post(
            "/cards", json={"name": name, "address": address, "birth_date": str(date(1990, 4, 1)), "sex": "2"}
        )
        response.raise_for_status()
        issued = response.json()
        return SandboxCard(self.jlis, issued["card_id"]), issued

    async def rows(self, table: str) -> list[dict[str, Any]]:
        from tsunagu.ca.store import models

        return await table_rows(self.app, getattr(models, table))

    async def events(self, prefix: str = "tsunagu.ca.") -> list[dict[str, Any]]:
        return await outbox_events(self.app, prefix)


def ca_settings(stack: RunningStack, database_url: str, **overrides: Any) -> CaSettings:
    credentials = stack.config.state_dir / "credentials"
    trust = stack.config.state_dir / "jlis-trust"
    values: dict[str, Any] = {"public_base_url": CA_BASE, **overrides}
    return CaSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=stack.broker.bootstrap_servers),
        auth={"private_key_file": credentials / "ca.key.pem", "trust_file": credentials / "trust.json"},
        environment="test",
        signer_url=stack.urls["signer"],
        jlis_sync_url=stack.urls["jlis-sync"],
        jpki={"root_ca_file": trust / "root.pem", "signing_ca_file": trust / "signing.pem"},
        **values,
    )


@pytest.fixture
def make_ca(platform: RunningStack, ca_keys: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def make(
        database_url: str | None = None, *, ceremony: bool = True, **overrides: Any
    ) -> AsyncIterator[CaHarness]:
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'ca.db'}"
        app = build_app("ca", ca_settings(platform, url, **overrides))
        async with running(app) as client, httpx.AsyncClient(base_url=platform.jlis_url, timeout=30) as jlis:
            harness = CaHarness(app, client, platform, jlis)
            if ceremony and not harness.services.ca.hierarchy.authorities:
                response = await client.post(
                    "/admin/v1/hierarchy",
                    json={
                        "root_key_id": ca_keys["root"],
                        "issuing_key_id": ca_keys["issuing"],
                        "ocsp_key_id": ca_keys["ocsp"],
                    },
                    auth=harness.auth("operator"),
                )
                assert response.status_code == 201, response.text
            yield harness

    return make


@pytest.fixture
async def ca(make_ca) -> AsyncIterator[CaHarness]:  # type: ignore[no-untyped-def]
    async with make_ca() as harness:
        yield harness
