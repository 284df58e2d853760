"""The signer app in-process on a real SoftHSM2 token, real Kafka, and a database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.fixtures.services import build_app, caller_auth, running, service_settings, sqlite_url
from tests.fixtures.softhsm import pkcs11_settings_for
from tsunagu.auth import ProvisionedCredentials
from tsunagu.devstack.softhsm import SoftHsmToken
from tsunagu.settings import KafkaSettings


@dataclass
class Signer:
    app: Any
    client: httpx.AsyncClient
    credentials: ProvisionedCredentials
    token: SoftHsmToken

    def auth(self, caller: str) -> httpx.Auth:
        return caller_auth(self.credentials, caller, "signer")

    async def call(self, method: str, path: str, caller: str = "ca", **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, auth=self.auth(caller), **kwargs)

    async def new_key(
        self, purpose: str, algorithm: str, *, activate: bool = True, **extra: Any
    ) -> dict[str, Any]:
        created = await self.call(
            "POST", "/v1/keys", "operator", json={"purpose": purpose, "algorithm": algorithm, **extra}
        )
        assert created.status_code == 201, created.text
        key = created.json()
        if activate:
            activated = await self.call("POST", f"/v1/keys/{key['kid']}/activate", "operator")
            assert activated.status_code == 200, activated.text
            key = activated.json()
        return key

    def public_key(self, key: dict[str, Any]) -> Any:
        return serialization.load_pem_public_key(key["public_key_pem"].encode())

    async def outbox_payloads(self) -> list[bytes]:
        from sqlalchemy import select

        runtime = self.app.state.runtime
        async with runtime.db.sessions() as session:
            return list(
                (
                    await session.execute(
                        select(runtime.outbox.table.c.payload).order_by(runtime.outbox.table.c.seq)
                    )
                ).scalars()
            )


SignerFactory = Callable[..., Any]


@pytest.fixture
def make_signer(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    credentials: ProvisionedCredentials,
    softhsm_signer_token: SoftHsmToken,
) -> SignerFactory:
    """Build and run a signer; ``make_signer(**settings_overrides)`` is an async context manager."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Signer]:
        # As the dev stack runs it: SoftHSM2 in this process, short calls inline.
        overrides.setdefault("pkcs11", pkcs11_settings_for(softhsm_signer_token, inline_calls=True))
        settings = service_settings(
            "signer",
            database_url=sqlite_url(tmp_path, "signer"),
            kafka=kafka_settings,
            credentials=credentials,
            **overrides,
        )
        app = build_app("signer", settings)
        async with running(app) as client:
            yield Signer(app, client, credentials, softhsm_signer_token)

    return make


@pytest.fixture
async def signer(make_signer: SignerFactory) -> AsyncIterator[Signer]:
    async with make_signer() as instance:
        yield instance
