"""broker benchmarks on the real stack (signer on SoftHSM2, ca, idp, consent, broker, jlis-sync,
tansu; PostgreSQL unless ``--sqlite``), written to ``bench/results/broker.json`` (the NGSI-LD figure
comes from ``bench.broker_ngsild`` and is kept):

- ``exchanges_per_s`` (target ≥ 500): personal data exchanges end to end — the consumer's
  ``POST /v1/exchanges`` (its client_credentials token, for many citizens in turn) → token, party,
  subject and catalog checks → consent from the event-fed view → a JWT signed by the signer's
  ``exchange`` key → the provider (``tsunagu.devstack.sample_provider`` in its own process, which
  verifies it with the broker's JWKS) → schema validation → exchange row + event committed → answer.
  Closed loop, ``--concurrency`` requests in flight.
- ``exchange_p99_ms_at_250`` (target < 50): the same, open loop at ``--rate`` (250) exchanges/s,
  latency from each scheduled send time.
- ``withdrawal_enforced_p99_ms`` (target < 1,000): a citizen withdraws (the wallet's signed
  withdrawal, recorded by consent); the consumer keeps asking every 10 ms; the time from the
  withdrawal's answer to the first refused exchange, for ``--withdrawals`` citizens.

    .venv/bin/python -m bench.broker [--quick] [--sqlite] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from bench.common import (
    BROKER_LIMITS_LIFTED,
    RESULTS_DIR,
    Latencies,
    bench_stack,
    cpu_per_request,
    enroll_citizens,
    gc_pauses,
    group_cpu_seconds,
    metric,
    open_loop,
    settle,
)
from bench.report import publish
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.ports import free_port_block, wait_for_port
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ALLERGY = "health.allergy"
PURPOSE = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}
SCHEMA = {
    "type": "object",
    "properties": {
        "allergens": {"type": "array", "items": {"type": "string"}},
        "recorded_on": {"type": "string"},
    },
    "required": ["allergens"],
}
NOTE = "exchange: "


@dataclass
class Scale:
    citizens: int
    concurrency: int
    seconds: float
    rate: float
    withdrawals: int

    @classmethod
    def of(cls, quick: bool, args: argparse.Namespace) -> Scale:
        if quick:
            return cls(8, 8, 2.0, min(args.rate, 50.0), 2)
        return cls(args.citizens, args.concurrency, args.seconds, args.rate, args.withdrawals)


@dataclass
class Client:
    client_id: str
    key: ECKey

    def assertion(self, audience: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 60}
        claims["jti"] = os.urandom(12).hex()
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key),
        }


def _auth(stack: RunningStack, caller: str, audience: str) -> httpx.Auth:
    key = load_private_key(stack.config.state_dir / "credentials" / f"{caller}.key.pem")
    return ServiceTokenAuth(ServiceTokenIssuer(caller, key), audience)


async def _register(idp: httpx.AsyncClient, stack: RunningStack, name: str) -> Client:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    body = {
        "redirect_uris": [f"https://{name}.example/cb"],
        "client_name": name,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.as_dict(private=False)]},
        "scope": "broker:exchange",
    }
    response = await idp.post(
        "/admin/v1/tenants/bench/clients", json=body, auth=_auth(stack, "operator", "idp")
    )
    response.raise_for_status()
    return Client(response.json()["client_id"], key)


async def _subject(idp: httpx.AsyncClient, stack: RunningStack, client: Client, person: Enrolled) -> str:
    response = await idp.post(
        "/internal/v1/subjects/pairwise",
        json={"client_id": client.client_id, "user_number": person.user_number},
        auth=_auth(stack, "broker", "idp"),
    )
    response.raise_for_status()
    return str(response.json()["sub"])


@dataclass
class Setup:
    consumer: Client
    token: str
    citizens: list[Enrolled]
    subs: list[str]  # the consumer's sub of each citizen
    decisions: list[str]  # each citizen's allowing decision
    provider: subprocess.Popen[bytes]


async def _prepare(stack: RunningStack, scale: Scale, state: Path) -> Setup:
    urls = stack.urls
    async with (
        httpx.AsyncClient(base_url=urls["idp"], timeout=60) as idp,
        httpx.AsyncClient(base_url=urls["consent"], timeout=60) as consent,
        httpx.AsyncClient(base_url=urls["broker"], timeout=60) as broker,
    ):
        tenant = {"id": "bench", "name_ja": "負荷市", "name_en": "Bench City"}
        (
            await idp.post("/admin/v1/tenants", json=tenant, auth=_auth(stack, "operator", "idp"))
        ).raise_for_status()
        provider_client = await _register(idp, stack, "records")
        consumer = await _register(idp, stack, "hospital")
        recipient = {"name_ja": "病院", "name_en": "Hospital"}
        operator = _auth(stack, "operator", "consent")
        put = await consent.put(
            f"/internal/v1/recipients/{consumer.client_id}", json=recipient, auth=operator
        )
        put.raise_for_status()
        port = free_port_block(1)
        item = {
            "label_ja": "アレルギー",
            "label_en": "Allergies",
            "sensitivity": "special-care",
            "schema": SCHEMA,
            "providers": [
                {"client_id": provider_client.client_id, "endpoint": f"http://127.0.0.1:{port}/data"}
            ],
        }
        defined = await broker.put(
            f"/internal/v1/tenants/bench/items/{ALLERGY}", json=item, auth=_auth(stack, "operator", "broker")
        )
        defined.raise_for_status()
        citizens = await enroll_citizens(stack, scale.citizens)
        records = {}
        subs = []
        for person in citizens:
            records[await _subject(idp, stack, provider_client, person)] = {
                ALLERGY: {"allergens": ["そば", "penicillin"], "recorded_on": "2026-04-01"}
            }
            subs.append(await _subject(idp, stack, consumer, person))
        decisions = await _consent_all(consent, stack, consumer, citizens)
        token = await idp.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "scope": "broker:exchange",
                "resource": urls["broker"],
                **consumer.assertion(f"{urls['idp']}/token"),
            },
        )
        token.raise_for_status()
    records_file = state / "records.json"
    records_file.write_text(json.dumps(records), encoding="utf-8")
    provider = _start_provider(provider_client.client_id, urls["broker"], port, records_file)
    return Setup(consumer, token.json()["access_token"], citizens, subs, decisions, provider)


def _start_provider(client_id: str, broker_url: str, port: int, records: Path) -> subprocess.Popen[bytes]:
    """The provider in its own process (it is outside the platform); returns once it listens."""
    arguments = [
        "--client-id",
        client_id,
        "--broker-url",
        broker_url,
        "--port",
        str(port),
        "--records",
        str(records),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "tsunagu.devstack.sample_provider", *arguments], start_new_session=True
    )
    wait_for_port(port, timeout_s=60)
    return process


async def _consent_all(
    consent: httpx.AsyncClient, stack: RunningStack, consumer: Client, citizens: list[Enrolled]
) -> list[str]:
    until = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    decisions = []
    for person in citizens:
        body = {
            "user_number": person.user_number,
            "recipient": consumer.client_id,
            "items": [{"item": ALLERGY, "required": True}],
            "purpose": PURPOSE,
            "validity": {"until": until},
        }
        asked = await consent.post(
            "/internal/v1/requests", json=body, auth=_auth(stack, "operator", "consent")
        )
        asked.raise_for_status()
        pending = [
            p
            for p in await wallet.fetch_requests(consent, person)
            if p["request_id"] == asked.json()["request_id"]
        ]
        decisions.append((await wallet.decide(consent, person, pending[0], {ALLERGY: True}))["decision_id"])
    return decisions


async def _closed_loop(session: aiohttp.ClientSession, url: str, setup: Setup, scale: Scale) -> Latencies:
    latencies = Latencies()
    headers = {"Authorization": f"Bearer {setup.token}"}
    deadline = time.perf_counter() + scale.seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            sub = setup.subs[next(counter) % len(setup.subs)]
            sent = time.perf_counter()
            async with session.post(
                url, json={"sub": sub, "items": [ALLERGY], "purpose": "treatment"}, headers=headers
            ) as response:
                await response.read()
                if response.status != 200:
                    latencies.failed(f"{response.status} {(await response.text())[:80]}")
                    continue
            latencies.values_s.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(scale.concurrency)))
    latencies.elapsed_s = time.perf_counter() - started
    return latencies


async def _withdrawals(
    stack: RunningStack, session: aiohttp.ClientSession, setup: Setup, scale: Scale
) -> list[float]:
    """Seconds from each withdrawal's recorded answer to the first refused exchange."""
    url = f"{stack.urls['broker']}/v1/exchanges"
    headers = {"Authorization": f"Bearer {setup.token}"}
    times = []
    async with httpx.AsyncClient(base_url=stack.urls["consent"], timeout=60) as consent:
        for n in range(min(scale.withdrawals, len(setup.citizens))):
            person, sub = setup.citizens[-1 - n], setup.subs[-1 - n]
            await wallet.withdraw(consent, person, setup.decisions[-1 - n])
            recorded = time.perf_counter()
            while True:
                async with session.post(
                    url, json={"sub": sub, "items": [ALLERGY], "purpose": "treatment"}, headers=headers
                ) as response:
                    await response.read()
                    if response.status == 403:
                        break
                if time.perf_counter() - recorded > 30:
                    raise RuntimeError("a withdrawal was not enforced within 30 s")
                await asyncio.sleep(0.01)
            times.append(time.perf_counter() - recorded)
    return times


async def measure(
    stack: RunningStack, scale: Scale, state: Path, notes: list[str]
) -> dict[str, dict[str, Any]]:
    setup = await _prepare(stack, scale, state)
    url = f"{stack.urls['broker']}/v1/exchanges"
    try:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as session:
            warm = Scale(scale.citizens, 8, 1.0, scale.rate, 0)
            await _closed_loop(session, url, setup, warm)
            pids = {name: process.pid for name, process in stack.processes.items()}
            before = {name: group_cpu_seconds(pid) for name, pid in pids.items()}
            closed = await _closed_loop(session, url, setup, scale)
            used = {name: group_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            per_s = len(closed.values_s) / closed.elapsed_s
            notes.append(
                f"{NOTE}closed loop, {scale.concurrency} in flight: {per_s:,.0f}/s; "
                + closed.describe("latency")
            )
            cpu = cpu_per_request(used, len(closed.values_s))
            notes.append(f"{NOTE}server CPU per exchange: {cpu}")
            waited = await settle()
            notes.append(f"{NOTE}the open loop started once the machine had settled ({waited:.1f} s)")
            bodies = [{"sub": sub, "items": [ALLERGY], "purpose": "treatment"} for sub in setup.subs]
            token = setup.token
            opened = await open_loop(
                session, url, bodies, lambda: {"Authorization": f"Bearer {token}"}, scale.rate, scale.seconds
            )
            notes.append(f"{NOTE}open loop at {scale.rate:,.0f}/s offered: " + opened.describe("latency"))
            withdrawals = sorted(await _withdrawals(stack, session, setup, scale))
            notes.append(f"{NOTE}garbage collections since start: {await gc_pauses(stack.urls)}")
    finally:
        setup.provider.terminate()
        setup.provider.wait(10)
    p99 = withdrawals[min(len(withdrawals) - 1, int(0.99 * len(withdrawals)))] * 1000
    notes.append(
        f"{NOTE}withdrawals: {len(withdrawals)} citizens, first refusal after "
        + ", ".join(f"{t * 1000:.0f}" for t in withdrawals)
        + " ms (the view answers while its consumer caught up ≤ 500 ms ago; polled every 10 ms)"
    )
    return {
        "exchanges_per_s": metric(per_s, "exchanges/s", "higher", 500),
        "exchange_p99_ms_at_250": metric(opened.percentile_ms(0.99), "ms", "lower", 50),
        "withdrawal_enforced_p99_ms": metric(p99, "ms", "lower", 1000),
    }


def run(scale: Scale, state_dir: Path, sqlite: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    notes = [
        f"{NOTE}services on {'SQLite' if sqlite else 'PostgreSQL'}; load generator: aiohttp in this process; "
        f"{scale.citizens} citizens, one item (health.allergy) per exchange from one provider process;"
        " the broker's per-address rate limit and per-client quota lifted (one client makes all requests)"
    ]
    # One consumer client makes every request: its per-client budget (a quota meant for one RP
    # among many) would cap the measurement, not the broker; the per-address limit likewise.
    with bench_stack(state_dir, sqlite=sqlite, service_environment=BROKER_LIMITS_LIFTED) as stack:
        metrics = asyncio.run(measure(stack, scale, state_dir, notes))
    return metrics, notes


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and a low rate (smoke run)")
    parser.add_argument("--sqlite", action="store_true", help="services on SQLite (default PostgreSQL)")
    parser.add_argument("--citizens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=250.0, help="open-loop exchanges per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--withdrawals", type=int, default=20)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    scale = Scale.of(args.quick, args)
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-broker-") as state:
        metrics, notes = run(scale, Path(state), args.sqlite)
    if args.quick:
        notes.append(f"{NOTE}quick run: small scale and low rates, not the measurement")
    notes.append(f"{NOTE}load average at the end " + " ".join(f"{value:.2f}" for value in os.getloadavg()))
    publish("broker", metrics, notes, args.output_dir, keep_other=NOTE)


if __name__ == "__main__":
    main()
