"""consent on the real stack: signer (SoftHSM2 token, with the receipt key), ca, jlis-sync, the
J-LIS sandbox and tansu run as processes (``tsunagu dev up``'s code, once per session); each test
gets its own consent app in-process (database of its own) that asks the stack's CA about
certificates and the stack's signer for receipts. Citizens are enrolled at the stack's CA with
software keys (wallet SDK)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.ca.conftest import started_stack
from tests.fixtures.services import build_app, enroll_test_citizen, outbox_events, running, table_rows
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.consent.settings import ConsentSettings
from tsunagu.devstack.stack import RunningStack
from tsunagu.settings import KafkaSettings
from tsunagu.wallet import Enrolled

HOSPITAL_A = "hospital-a"
HOSPITAL_B = "hospital-b"
TREATMENT = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}


@pytest.fixture(scope="package")
def consent_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with started_stack(tmp_path_factory) as stack:
        yield stack


def service_auth(stack: RunningStack, caller: str, audience: str = "consent") -> httpx.Auth:
    credentials = stack.config.state_dir / "credentials"
    return ServiceTokenAuth(
        ServiceTokenIssuer(caller, load_private_key(credentials / f"{caller}.key.pem")), audience
    )


def consent_settings(stack: RunningStack, database_url: str, **overrides: Any) -> ConsentSettings:
    credentials = stack.config.state_dir / "credentials"
    return ConsentSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=stack.broker.bootstrap_servers, fetch_max_wait_ms=20),
        auth={"private_key_file": credentials / "consent.key.pem", "trust_file": credentials / "trust.json"},
        environment="test",
        signer_url=stack.urls["signer"],
        ca_url=stack.urls["ca"],
        **overrides,
    )


@dataclass
class ConsentHarness:
    app: Any
    client: httpx.AsyncClient  # anonymous, as the wallet calls
    stack: RunningStack

    def auth(self, caller: str = "operator") -> httpx.Auth:
        return service_auth(self.stack, caller)

    async def register(self, recipient: str, name_ja: str, name_en: str) -> None:
        response = await self.client.put(
            f"/internal/v1/recipients/{recipient}",
            json={"name_ja": name_ja, "name_en": name_en},
            auth=self.auth("operator"),
        )
        assert response.status_code in (200, 201), response.text

    async def ask(
        self,
        user_number: str,
        recipient: str,
        items: dict[str, bool],
        *,
        purpose: dict[str, str] | None = None,
        until: datetime | None = None,
        expect: int = 201,
    ) -> dict[str, Any]:
        """A consent request (items: id → required) as an operator-side service would make it."""
        response = await self.client.post(
            "/internal/v1/requests",
            json={
                "user_number": user_number,
                "recipient": recipient,
                "items": [{"item": item, "required": required} for item, required in items.items()],
                "purpose": purpose or TREATMENT,
                "validity": {"until": (until or datetime.now(UTC) + timedelta(days=365)).isoformat()},
            },
            auth=self.auth("operator"),
        )
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def effective(
        self,
        user_number: str,
        recipient: str,
        items: list[str],
        *,
        purpose: str = "treatment",
        at: Any = None,
    ) -> dict[str, str]:
        body: dict[str, Any] = {
            "user_number": user_number,
            "recipient": recipient,
            "items": items,
            "purpose": purpose,
        }
        if at is not None:
            body["at"] = at.isoformat()
        response = await self.client.post("/internal/v1/effective", json=body, auth=self.auth("idp"))
        assert response.status_code == 200, response.text
        return dict(response.json()["decisions"])

    async def count(self, table: str) -> int:
        from tsunagu.consent.store import models

        async with self.app.state.runtime.db.sessions() as session:
            return int(
                (await session.execute(select(func.count()).select_from(getattr(models, table)))).scalar()
            )

    async def rows(self, table: str) -> list[dict[str, Any]]:
        from tsunagu.consent.store import models

        return await table_rows(self.app, getattr(models, table))

    async def events(self, prefix: str = "tsunagu.consent.") -> list[dict[str, Any]]:
        return await outbox_events(self.app, prefix)


@pytest.fixture
def make_consent(consent_platform: RunningStack, tmp_path: Path):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def make(database_url: str | None = None, **overrides: Any) -> AsyncIterator[ConsentHarness]:
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'consent.db'}"
        app = build_app("consent", consent_settings(consent_platform, url, **overrides))
        async with running(app) as client:
            harness = ConsentHarness(app, client, consent_platform)
            await harness.register(HOSPITAL_A, "A病院", "Hospital A")
            await harness.register(HOSPITAL_B, "B病院", "Hospital B")
            yield harness

    return make


@pytest.fixture
async def consent(make_consent) -> AsyncIterator[ConsentHarness]:  # type: ignore[no-untyped-def]
    async with make_consent() as harness:
        yield harness


async def enroll_citizen(stack: RunningStack, name: str = "同意 花子") -> Enrolled:
    """A citizen with a phone enrolled at the stack's CA (software keys)."""
    citizen: Enrolled = await enroll_test_citizen(stack, name, birth_date="1980-02-01", sex="2")
    return citizen


@pytest.fixture(scope="package")
async def citizen(consent_platform: RunningStack) -> Enrolled:
    return await enroll_citizen(consent_platform)


@pytest.fixture(scope="package")
async def other_citizen(consent_platform: RunningStack) -> Enrolled:
    return await enroll_citizen(consent_platform, "別人 次郎")
