"""The sample relying parties (examples/) on the real stack: every service, the city's records
system and the apps run as processes (``tsunagu dev up``'s code, on PostgreSQL), once for this
package; each test enrolls its own citizen with a card from the J-LIS sandbox."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.common import bench_stack
from tests.broker.conftest import PUSH_TEST_ENV
from tsunagu.devstack.demo_apps import HEALTH_RECORDS, Browser, records_sub, write_records
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, SandboxCard, enroll


@pytest.fixture(scope="package")
def apps_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with bench_stack(
        tmp_path_factory.mktemp("apps-stack"), sqlite=False, service_environment=PUSH_TEST_ENV, apps=True
    ) as stack:
        yield stack


@dataclass
class Resident:
    """A citizen with an enrolled phone, the J-LIS sandbox's person id, and health records."""

    enrolled: Enrolled
    person_id: str


@dataclass
class Apps:
    stack: RunningStack
    urls: dict[str, str]
    idp: httpx.AsyncClient
    consent: httpx.AsyncClient
    jlis: httpx.AsyncClient

    def browser(self) -> Browser:
        """A fresh browser (its own cookie jar) whose wallet talks to this stack."""
        return Browser(self.stack.urls["idp"], self.idp, self.consent)

    def client_id(self, app: str) -> str:
        settings = json.loads((Path(self.stack.records_file).parent / f"{app}.json").read_text())
        return str(settings["client_id"])

    async def resident(self, name: str = "江別 花子") -> Resident:
        issued = (
            await self.jlis.post(
                "/cards",
                json={
                    "name": f"{name}{secrets.token_hex(2)}",
                    "address": "北海道江別市高砂町6番地",
                    "birth_date": "1985-03-03",
                    "sex": "2",
                },
            )
        ).json()
        async with httpx.AsyncClient(base_url=self.stack.urls["ca"], timeout=30) as ca:
            enrolled = await enroll(ca, SandboxCard(self.jlis, issued["card_id"]))
        credentials = self.stack.config.state_dir / "credentials"
        records_file = Path(self.stack.records_file)
        sub = await records_sub(self.stack.urls["idp"], credentials, records_file, enrolled.user_number)
        write_records(records_file, sub, HEALTH_RECORDS)
        return Resident(enrolled, issued["person_id"])


@pytest.fixture
async def apps(apps_platform: RunningStack) -> AsyncIterator[Apps]:
    urls = apps_platform.urls
    async with (
        httpx.AsyncClient(base_url=urls["idp"], timeout=30) as idp,
        httpx.AsyncClient(base_url=urls["consent"], timeout=30) as consent,
        httpx.AsyncClient(base_url=apps_platform.jlis_url, timeout=30) as jlis,
    ):
        yield Apps(apps_platform, dict(apps_platform.apps), idp, consent, jlis)
