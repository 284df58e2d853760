"""consent benchmarks on the real stack (signer on SoftHSM2 with the receipt key, ca, jlis-sync,
the J-LIS sandbox, tansu and the consent process; PostgreSQL unless ``--sqlite``), written to
``bench/results/consent.json``:

- ``consent_decisions_per_s`` (target ≥ 300): signed decisions recorded over HTTP — JWS and chain
  checked, the CA asked for the certificate's status at the signing time, the receipt countersigned
  by the signer (batched), statement + evidence + items + event in one transaction. Statements are
  signed by the load generator beforehand (citizens' phones sign, not the platform); one decision in
  flight per citizen (each citizen's decisions are a sequence), ``--concurrency`` citizens at once.
- ``consent_check_p99_ms`` (target < 5): ``POST /internal/v1/effective`` with one item, as the idp
  calls it, open loop at ``--rate`` (1,000) checks/s; latency from the scheduled send time (no
  coordinated omission), so a server that falls behind shows it.
- ``consent_batch100_p99_ms`` (target < 10): ``POST /internal/v1/effective/batch`` with 100 checks
  (100 distinct person × recipient × item keys that have decisions), open loop at ``--batch-rate``.

    .venv/bin/python -m bench.consent [--quick] [--sqlite] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.common import (
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
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ITEMS = ["health.allergy", "health.medication", "resident.name", "resident.address"]
PURPOSE = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}


@dataclass
class Scale:
    citizens: int
    recipients: int
    concurrency: int
    rate: float
    seconds: float
    batch_rate: float

    @classmethod
    def of(cls, quick: bool, args: argparse.Namespace) -> Scale:
        if quick:
            return cls(16, 4, 16, min(args.rate, 300.0), 3.0, min(args.batch_rate, 20.0))
        return cls(args.citizens, args.recipients, args.concurrency, args.rate, args.seconds, args.batch_rate)


def _issuer(stack: RunningStack, caller: str) -> ServiceTokenIssuer:
    return ServiceTokenIssuer(
        caller, load_private_key(stack.config.state_dir / "credentials" / f"{caller}.key.pem")
    )


async def _prepare(stack: RunningStack, scale: Scale) -> tuple[list[Enrolled], list[list[str]]]:
    """Recipients, citizens and one request per citizen × recipient; the signed decisions."""
    url = stack.urls["consent"]
    operator = ServiceTokenAuth(_issuer(stack, "operator"), "consent")
    recipients = [f"bench-rp-{n}" for n in range(scale.recipients)]
    citizens = await enroll_citizens(stack, scale.citizens)
    async with httpx.AsyncClient(base_url=url, auth=operator, timeout=60) as client:
        for recipient in recipients:
            (
                await client.put(
                    f"/internal/v1/recipients/{recipient}", json={"name_ja": recipient, "name_en": recipient}
                )
            ).raise_for_status()
        until = (datetime.now(UTC) + timedelta(days=365)).isoformat()

        async def ask(person: Enrolled, recipient: str) -> None:
            body = {
                "user_number": person.user_number,
                "recipient": recipient,
                "items": [{"item": item, "required": False} for item in ITEMS],
                "purpose": PURPOSE,
                "validity": {"until": until},
            }
            (await client.post("/internal/v1/requests", json=body)).raise_for_status()

        for person in citizens:
            await asyncio.gather(*(ask(person, recipient) for recipient in recipients))
    tokens: list[list[str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as anonymous:
        for person in citizens:
            pending = await wallet.fetch_requests(anonymous, person)
            tokens.append(
                [
                    wallet.sign_statement(
                        person.signing,
                        wallet.decision_statement(
                            request,
                            {item: random.random() < 0.7 for item in ITEMS},
                            previous=request["previous"],
                        ),
                    )
                    for request in pending
                ]
            )
    return citizens, tokens


def _pids(stack: RunningStack) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes.items()}


async def _decisions(stack: RunningStack, tokens: list[list[str]], scale: Scale, notes: list[str]) -> float:
    url = f"{stack.urls['consent']}/v1/decisions"
    latencies = Latencies()
    queue = list(tokens)
    before = {name: group_cpu_seconds(pid) for name, pid in _pids(stack).items()}
    connector = aiohttp.TCPConnector(limit=scale.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def citizen() -> None:
            while queue:
                for token in queue.pop():
                    sent = time.perf_counter()
                    async with session.post(url, json={"decision": token}) as response:
                        body = await response.read()
                        if response.status != 201:
                            latencies.failed(f"{response.status} {body[:80].decode(errors='replace')}")
                            continue
                    latencies.values_s.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(citizen() for _ in range(scale.concurrency)))
        latencies.elapsed_s = time.perf_counter() - started
    used = {name: group_cpu_seconds(pid) - before[name] for name, pid in _pids(stack).items()}
    per_s = len(latencies.values_s) / latencies.elapsed_s
    notes.append(
        f"decisions ({scale.concurrency} citizens in flight): {per_s:,.0f}/s; "
        + latencies.describe("latency")
    )
    cpu = cpu_per_request(used, len(latencies.values_s))
    notes.append(f"decisions: server CPU per decision: {cpu}")
    return per_s


async def _checks(
    stack: RunningStack, citizens: list[Enrolled], scale: Scale, notes: list[str]
) -> tuple[float, float]:
    issuer = _issuer(stack, "idp")

    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.token_for('consent')}"}

    recipients = [f"bench-rp-{n}" for n in range(scale.recipients)]
    singles = [
        {
            "user_number": random.choice(citizens).user_number,
            "recipient": random.choice(recipients),
            "items": [random.choice(ITEMS)],
            "purpose": "treatment",
        }
        for _ in range(2000)
    ]
    keys = [(p.user_number, r, i) for p in citizens for r in recipients for i in ITEMS]
    batches = [
        {
            "checks": [
                {"user_number": u, "recipient": r, "item": i, "purpose": "treatment"}
                for u, r, i in random.sample(keys, min(100, len(keys)))
            ]
        }
        for _ in range(200)
    ]
    base = stack.urls["consent"]
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await open_loop(
            session, f"{base}/internal/v1/effective", singles, headers, min(scale.rate, 200.0), 1.0
        )  # warm
        consent_pid = stack.processes["consent"].pid
        before = group_cpu_seconds(consent_pid)
        checks = await open_loop(
            session, f"{base}/internal/v1/effective", singles, headers, scale.rate, scale.seconds
        )
        per_check_us = (group_cpu_seconds(consent_pid) - before) / max(len(checks.values_s), 1) * 1e6
        notes.append(
            f"single checks at {scale.rate:,.0f}/s offered: {checks.describe('latency')}; "
            f"consent CPU {per_check_us:,.0f} µs per check"
        )
        batch = await open_loop(
            session, f"{base}/internal/v1/effective/batch", batches, headers, scale.batch_rate, scale.seconds
        )
        size = len(batches[0]["checks"])
        notes.append(f"batches of {size} at {scale.batch_rate:,.0f}/s offered: " + batch.describe("latency"))
    notes.append(f"garbage collections since start: {await gc_pauses(stack.urls)}")
    return checks.percentile_ms(0.99), batch.percentile_ms(0.99)


async def measure(stack: RunningStack, scale: Scale, notes: list[str]) -> dict[str, dict[str, Any]]:
    citizens, tokens = await _prepare(stack, scale)
    notes.append(f"{len(citizens)} citizens × {scale.recipients} recipients, {len(ITEMS)} items per request")
    per_s = await _decisions(stack, tokens, scale, notes)
    waited = await settle()
    notes.append(f"checks started once the machine had settled after the decisions ({waited:.1f} s)")
    check_p99, batch_p99 = await _checks(stack, citizens, scale, notes)
    return {
        "consent_decisions_per_s": metric(per_s, "decisions/s", "higher", 300),
        "consent_check_p99_ms": metric(check_p99, "ms", "lower", 5),
        "consent_batch100_p99_ms": metric(batch_p99, "ms", "lower", 10),
    }


def run(scale: Scale, state_dir: Path, sqlite: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    notes = [f"services on {'SQLite' if sqlite else 'PostgreSQL'}; load generator: aiohttp in this process"]
    with bench_stack(state_dir, sqlite=sqlite) as stack:
        metrics = asyncio.run(measure(stack, scale, notes))
    return metrics, notes


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and a low rate (smoke run)")
    parser.add_argument("--sqlite", action="store_true", help="services on SQLite (default PostgreSQL)")
    parser.add_argument("--citizens", type=int, default=64)
    parser.add_argument("--recipients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0, help="single checks per second")
    parser.add_argument("--batch-rate", type=float, default=50.0, help="batches of 100 per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    scale = Scale.of(args.quick, args)
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-consent-") as state:
        metrics, notes = run(scale, Path(state), args.sqlite)
    if args.quick:
        notes.append("quick run: small scale and low rates, not the measurement")
    notes.append("load average at the end " + " ".join(f"{value:.2f}" for value in os.getloadavg()))
    publish("consent", metrics, notes, args.output_dir)


if __name__ == "__main__":
    main()
