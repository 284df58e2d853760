"""The SSRF guard (tsunagu.service.egress): which addresses party-given URLs may reach, at
registration and at call time, through httpx and aiohttp, against real servers on the loopback."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import httpx
import pytest
from fastapi import FastAPI, Request

from tests.fixtures.browser import serving
from tsunagu.service.egress import EgressConnectError, EgressPolicy, EgressRefused, policy_from

STRICT = EgressPolicy()  # production: public addresses only
DEV = policy_from(True, [])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:8.8.8.8", True),
        ("not-an-ip", False),
    ],
)
def test_only_public_addresses_are_allowed_by_default(address: str, allowed: bool):
    assert STRICT.address_allowed(address) is allowed


def test_loopback_and_listed_networks_are_allowed_only_when_configured():
    assert DEV.address_allowed("127.0.0.1") and DEV.address_allowed("::1")
    assert not DEV.address_allowed("10.20.1.1")
    municipal = policy_from(False, ["10.20.0.0/16"])
    assert municipal.address_allowed("10.20.1.1") and not municipal.address_allowed("10.21.1.1")
    assert not municipal.address_allowed("127.0.0.1")


@pytest.mark.parametrize(
    "url",
    [
        "http://hospital.example/hook",  # http off loopback
        "https://10.0.0.5/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
        "https://169.254.169.254/",
        "ftp://hospital.example/",
        "https://user:pw@hospital.example/",
        "https://hospital.example/#x",
        "https://hospital.example:99999/",
        "/relative",
        "x" * 3000,
    ],
)
def test_registration_refuses_what_production_may_not_call(url: str):
    with pytest.raises(EgressRefused):
        STRICT.check_url(url)


def test_registration_accepts_public_https_and_dev_loopback_http():
    assert STRICT.check_url("https://hospital.example/hook?x=1") == "https://hospital.example/hook?x=1"
    assert DEV.check_url("http://127.0.0.1:8123/hook")
    assert DEV.check_url("http://localhost:8123/hook")
    with pytest.raises(EgressRefused):
        DEV.check_url("http://10.0.0.5/hook")


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    """A real server on the loopback that records the Host header of what reaches it."""
    hosts: list[str] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        hosts.append(request.headers["host"])
        return {"ok": "yes"}

    with serving(app) as url:
        yield url, hosts


async def test_httpx_refuses_a_name_that_resolves_inside_and_reaches_nothing(
    receiver: tuple[str, list[str]],
):
    url, hosts = receiver
    port = url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(transport=STRICT.httpx_transport()) as client:
        for target in (f"http://localhost:{port}/hook", f"{url}/hook"):  # a name, then a literal
            with pytest.raises(EgressConnectError):
                await client.post(target)
    assert hosts == []


async def test_httpx_connects_to_the_address_it_checked_keeping_the_name(receiver: tuple[str, list[str]]):
    url, hosts = receiver
    port = url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(transport=DEV.httpx_transport()) as client:
        response = await client.post(f"http://localhost:{port}/hook")
    assert response.status_code == 200 and response.json() == {"ok": "yes"}
    assert hosts == [f"localhost:{port}"]  # pinned to the checked address, Host unchanged


async def test_aiohttp_refuses_names_resolving_inside(receiver: tuple[str, list[str]]):
    url, hosts = receiver
    port = url.rsplit(":", 1)[1]
    connector = aiohttp.TCPConnector(resolver=STRICT.aiohttp_resolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.post(f"http://localhost:{port}/hook")
    with pytest.raises(EgressRefused):  # aiohttp does not resolve a literal: checked before the call
        STRICT.check_now(f"{url}/hook")
    assert hosts == []
    allowed = aiohttp.TCPConnector(resolver=DEV.aiohttp_resolver())
    async with (
        aiohttp.ClientSession(connector=allowed) as session,
        session.post(f"http://localhost:{port}/hook") as response,
    ):
        assert response.status == 200
    assert hosts == [f"localhost:{port}"]


def test_the_policy_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch):
    from tsunagu.broker.settings import BrokerSettings
    from tsunagu.service.egress import egress_policy

    monkeypatch.setenv("TSUNAGU_BROKER_ENVIRONMENT", "production")
    monkeypatch.setenv("TSUNAGU_BROKER_EGRESS__ALLOWED_NETWORKS", '["10.20.0.0/16"]')
    production = egress_policy(BrokerSettings())
    assert not production.allow_loopback and production.address_allowed("10.20.3.4")
    monkeypatch.setenv("TSUNAGU_BROKER_ENVIRONMENT", "dev")
    assert egress_policy(BrokerSettings()).allow_loopback  # every dev party is on 127.0.0.1
    monkeypatch.setenv("TSUNAGU_BROKER_EGRESS__ALLOW_LOOPBACK", "false")
    assert not egress_policy(BrokerSettings()).allow_loopback
    monkeypatch.setenv("TSUNAGU_BROKER_EGRESS__ALLOWED_NETWORKS", '["not a network"]')
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        BrokerSettings()
