"""The broker on the real stack: signer (SoftHSM2), ca, idp, consent, broker and jlis-sync run as
processes (``tsunagu dev up``'s code, once per session) with tansu and PostgreSQL. Parties are
registered at the stack's idp and call the broker with client_credentials tokens
(``resource`` = the broker); citizens are enrolled at the CA and decide consent with the wallet SDK;
providers are :class:`tsunagu.devstack.sample_provider.SampleProvider` servers on loopback."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

from bench.common import bench_stack
from tests.ca.conftest import started_stack
from tests.fixtures.services import enroll_test_citizen
from tests.idp.rp import RelyingParty, register_rp
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.sample_provider import SampleProvider, serve
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

TENANT = "ebetsu"
ALLERGY = "health.allergy"
ALLERGY_SCHEMA = {
    "type": "object",
    "properties": {
        "allergens": {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 50},
        "recorded_on": {"type": "string", "format": "date"},
    },
    "required": ["allergens"],
}
TREATMENT = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}
# Push at test speed: short webhook timeout, few attempts, fast backoff, short claims, and usage
# counters flushed every second (also given to a broker restarted by a test).
PUSH_TEST_ENV = {
    "TSUNAGU_BROKER_PUSH_TIMEOUT_S": "2",
    "TSUNAGU_BROKER_PUSH_MAX_ATTEMPTS": "3",
    "TSUNAGU_BROKER_PUSH_RETRY_INITIAL_S": "0.2",
    "TSUNAGU_BROKER_PUSH_RETRY_MAX_S": "1",
    "TSUNAGU_BROKER_PUSH_LEASE_S": "6",
    "TSUNAGU_BROKER_PUSH_POLL_S": "0.2",
    "TSUNAGU_BROKER_USAGE_FLUSH_S": "1",
}


@pytest.fixture(scope="package")
def broker_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The stack on PostgreSQL (one database per service, dropped afterwards)."""
    with bench_stack(
        tmp_path_factory.mktemp("broker-stack"), sqlite=False, service_environment=PUSH_TEST_ENV
    ) as stack:
        yield stack


@pytest.fixture(scope="package")
def ngsild_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack whose services run on SQLite (the NGSI-LD tests bring their own PostgreSQL broker
    and check that a SQLite broker refuses NGSI-LD cleanly). Defined here, once for the package,
    so it stops with the package's tests."""
    with started_stack(tmp_path_factory) as stack:
        yield stack


def service_auth(stack: RunningStack, caller: str, audience: str) -> httpx.Auth:
    credentials = stack.config.state_dir / "credentials"
    return ServiceTokenAuth(
        ServiceTokenIssuer(caller, load_private_key(credentials / f"{caller}.key.pem")), audience
    )


VIEW_APPLIED = 'tsunagu_consumer_events_total{consumer="broker.consent-view",outcome="applied"}'


@dataclass
class Party:
    rp: RelyingParty
    name: str
    token: str = ""

    @property
    def client_id(self) -> str:
        return self.rp.client_id

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class BrokerHarness:
    stack: RunningStack
    idp: httpx.AsyncClient
    broker: httpx.AsyncClient
    consent: httpx.AsyncClient
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def broker_url(self) -> str:
        return self.stack.urls["broker"]

    def auth(self, caller: str, audience: str) -> httpx.Auth:
        return service_auth(self.stack, caller, audience)

    async def party(self, name: str, scopes: str = "broker:exchange", *, tenant: str = TENANT) -> Party:
        """An idp client of its own sector (``https://<name>.example``), a consent recipient."""
        rp = await register_rp(
            self.idp,
            self.auth("operator", "idp"),
            tenant=tenant,
            redirect_uri=f"https://{name}.example/cb",
            grant_types=["authorization_code", "client_credentials"],
            scope=scopes,
            client_name=name,
        )
        response = await self.consent.put(
            f"/internal/v1/recipients/{rp.client_id}",
            json={"name_ja": name, "name_en": name},
            auth=self.auth("operator", "consent"),
        )
        assert response.status_code in (200, 201), response.text
        party = Party(rp, name)
        party.token = await self.token(party, scopes)
        return party

    async def token(self, party: Party, scope: str, resource: str | None = None) -> str:
        response = await self.idp.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "resource": resource or self.broker_url,
                **party.rp.auth_form(f"{self.stack.urls['idp']}/token"),
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def provider(
        self, name: str = "records", scopes: str = "broker:provide"
    ) -> tuple[Party, SampleProvider, str]:
        """A provider party and its records server on loopback (stopped after the test)."""
        party = await self.party(name, scopes)
        sample = SampleProvider(client_id=party.client_id, broker_url=self.broker_url)
        runner, endpoint = await serve(sample)
        self.runners.append(runner)
        return party, sample, endpoint

    async def define_item(
        self,
        item_id: str,
        providers: list[dict[str, str]],
        *,
        schema: dict[str, Any] | None = None,
        sensitivity: str = "special-care",
        tenant: str = TENANT,
        expect: int = 200,
    ) -> httpx.Response:
        response = await self.broker.put(
            f"/internal/v1/tenants/{tenant}/items/{item_id}",
            json={
                "label_ja": item_id,
                "label_en": item_id,
                "sensitivity": sensitivity,
                "schema": schema or ALLERGY_SCHEMA,
                "providers": providers,
            },
            auth=self.auth("operator", "broker"),
        )
        assert response.status_code == expect, response.text
        return response

    async def sub_of(self, party: Party, citizen: Enrolled) -> str:
        """The citizen's ``sub`` at this party — what the idp gives the party at login."""
        return await self.sub_for(party, citizen.user_number)

    async def sub_for(self, party: Party, user_number: str) -> str:
        response = await self.idp.post(
            "/internal/v1/subjects/pairwise",
            json={"client_id": party.client_id, "user_number": user_number},
            auth=self.auth("broker", "idp"),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["sub"])

    async def ask(
        self, user_number: str, party: Party, items: list[str], *, purpose: dict[str, str] = TREATMENT
    ) -> str:
        """The party asks the citizen for consent (as the idp would); the request's id."""
        response = await self.consent.post(
            "/internal/v1/requests",
            json={
                "user_number": user_number,
                "recipient": party.client_id,
                "items": [{"item": item, "required": False} for item in items],
                "purpose": purpose,
                "validity": {"until": (datetime.now(UTC) + timedelta(days=365)).isoformat()},
            },
            auth=self.auth("operator", "consent"),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["request_id"])

    async def decide(
        self, citizen: Enrolled, party: Party, items: dict[str, bool], *, purpose: dict[str, str] = TREATMENT
    ) -> dict[str, Any]:
        """The party asks, the citizen's wallet signs item by item; returns once the broker's
        consent view has applied the decision (until then a fresh view may still refuse: the
        event is on its way)."""
        request_id = await self.ask(citizen.user_number, party, list(items), purpose=purpose)
        pending = [
            p for p in await wallet.fetch_requests(self.consent, citizen) if p["request_id"] == request_id
        ]
        applied = await self._view_applied()
        decided = await wallet.decide(self.consent, citizen, pending[0], items)
        deadline = time.monotonic() + 15
        while await self._view_applied() <= applied:
            assert time.monotonic() < deadline, "the broker's consent view did not apply the decision"
            await asyncio.sleep(0.02)
        return decided

    async def _view_applied(self) -> float:
        """Decisions the broker's consent view has applied (its consumer's counter)."""
        for line in (await self.broker.get("/metrics")).text.splitlines():
            if line.startswith(VIEW_APPLIED):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def pull(
        self, party: Party, sub: str, items: list[str], purpose: str = "treatment"
    ) -> httpx.Response:
        return await self.broker.post(
            "/v1/exchanges", json={"sub": sub, "items": items, "purpose": purpose}, headers=party.bearer
        )

    async def exchange_log(self, citizen: Enrolled) -> list[dict[str, Any]]:
        response = await self.broker.get(
            "/internal/v1/exchanges",
            params={"user_number": citizen.user_number},
            auth=self.auth("consent", "broker"),
        )
        assert response.status_code == 200, response.text
        return list(response.json()["exchanges"])


@asynccontextmanager
async def broker_harness(stack: RunningStack) -> AsyncIterator[BrokerHarness]:
    """Parties, providers and consent on ``stack`` (any running stack: the wallet's and consent's
    tests make exchanges with it too); the providers' servers stop at the end."""
    urls = stack.urls
    async with (
        httpx.AsyncClient(base_url=urls["idp"], timeout=30) as idp,
        httpx.AsyncClient(base_url=urls["broker"], timeout=30) as broker_client,
        httpx.AsyncClient(base_url=urls["consent"], timeout=30) as consent,
    ):
        harness = BrokerHarness(stack, idp, broker_client, consent)
        try:
            yield harness
        finally:
            for runner in harness.runners:
                await runner.cleanup()


@pytest.fixture
async def broker(broker_platform: RunningStack) -> AsyncIterator[BrokerHarness]:
    async with broker_harness(broker_platform) as harness:
        yield harness


@pytest.fixture
async def citizen(broker_platform: RunningStack) -> Enrolled:
    return await enroll_test_citizen(
        broker_platform, f"江別 花子{secrets.token_hex(2)}", birth_date="1985-04-01", sex="2"
    )
