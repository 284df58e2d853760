"""The idp on the real stack: signer (SoftHSM2 token), ca, jlis-sync, the J-LIS sandbox and tansu
run as processes (``tsunagu dev up``'s code, once per session, including the idp process for the
tests that need real HTTP: browser, Authlib, wallet over the network). Most tests get their own
idp app in-process (database of its own, SQLite or PostgreSQL) talking to the stack over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ca.conftest import started_stack
from tests.fixtures.services import build_app, enroll_test_citizen, outbox_events, running, table_rows
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.stack import RunningStack
from tsunagu.idp.settings import IdpSettings
from tsunagu.settings import KafkaSettings
from tsunagu.wallet import Enrolled

ISSUER = "http://idp.test"
PAIRWISE_SECRET = "test-pairwise-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="package")
def idp_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with started_stack(tmp_path_factory) as stack:
        yield stack


def service_auth(stack: RunningStack, caller: str, audience: str) -> httpx.Auth:
    credentials = stack.config.state_dir / "credentials"
    return ServiceTokenAuth(
        ServiceTokenIssuer(caller, load_private_key(credentials / f"{caller}.key.pem")), audience
    )


def idp_settings(stack: RunningStack, database_url: str, **overrides: Any) -> IdpSettings:
    credentials = stack.config.state_dir / "credentials"
    values: dict[str, Any] = {"issuer": ISSUER, "pairwise_secret": PAIRWISE_SECRET, **overrides}
    return IdpSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=stack.broker.bootstrap_servers),
        auth={"private_key_file": credentials / "idp.key.pem", "trust_file": credentials / "trust.json"},
        environment="test",
        signer_url=stack.urls["signer"],
        ca_url=stack.urls["ca"],
        jlis_sync_url=stack.urls["jlis-sync"],
        **values,
    )


@dataclass
class IdpHarness:
    app: Any
    client: httpx.AsyncClient  # anonymous, as browsers, RPs and wallets call
    stack: RunningStack

    def new_client(self) -> httpx.AsyncClient:
        """Another caller of the same app (a browser, a wallet) with its own cookie jar."""
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=ISSUER, timeout=30)

    def auth(self, caller: str = "operator") -> httpx.Auth:
        return service_auth(self.stack, caller, "idp")

    @property
    def services(self) -> Any:
        return self.app.state.runtime.resources

    async def rows(self, table: str) -> list[dict[str, Any]]:
        from tsunagu.idp.store import models

        return await table_rows(self.app, getattr(models, table))

    async def events(self, prefix: str = "tsunagu.idp.") -> list[dict[str, Any]]:
        return await outbox_events(self.app, prefix)


@pytest.fixture
def make_idp(idp_platform: RunningStack, tmp_path: Path):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def make(database_url: str | None = None, **overrides: Any) -> AsyncIterator[IdpHarness]:
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'idp.db'}"
        app = build_app("idp", idp_settings(idp_platform, url, **overrides))
        async with running(app) as client:
            client.base_url = httpx.URL(ISSUER)
            yield IdpHarness(app, client, idp_platform)

    return make


@pytest.fixture
async def idp(make_idp) -> AsyncIterator[IdpHarness]:  # type: ignore[no-untyped-def]
    async with make_idp() as harness:
        yield harness


async def enroll_citizen(stack: RunningStack, name: str = "数字 太郎") -> Enrolled:
    """A citizen with a phone enrolled at the stack's CA (software keys)."""
    citizen: Enrolled = await enroll_test_citizen(stack, name, birth_date="1985-06-15", sex="1")
    return citizen


@pytest.fixture(scope="package")
async def citizen(idp_platform: RunningStack) -> Enrolled:
    return await enroll_citizen(idp_platform)
