"""Complete enrollments per second, end to end over HTTP against the stack's CA process.

One enrollment = ``POST /v1/enrollments`` → the card signs the challenge (the J-LIS sandbox's card
API: RSA-2048 in its process) → ``jpki-proof`` (chain, signature, J-LIS status via jlis-sync,
person lookup and link in jlis-sync) → ``signing-certificate`` (CSR check, lint, signature in the
HSM through the signer) → ``authentication-certificate`` (JWS check, lint, HSM signature). Keys and
CSRs are made before the clock starts (the phone's secure element makes them, not the CA); cards
are made before too; no basic-4 consent is sent (it is optional). Load: aiohttp from this process,
``concurrency`` wallets at once, bounded in count and time. Where the time goes: the mean latency
of each step and the CPU seconds each process spent per enrollment (/proc).
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bench.common import group_cpu_seconds, metric
from tsunagu.wallet import SoftwareKey
from tsunagu.wallet.keys import request_claims

if TYPE_CHECKING:
    from bench.ca import CaBench

STEPS = ("start", "card", "proof", "signing", "authentication")


@dataclass
class Phone:
    card_id: str
    certificate_pem: str
    signing: SoftwareKey = field(default_factory=SoftwareKey)
    authentication: SoftwareKey = field(default_factory=SoftwareKey)
    signing_csr: str = ""
    authentication_csr: str = ""

    def __post_init__(self) -> None:
        self.signing_csr = self.signing.csr_pem()
        self.authentication_csr = self.authentication.csr_pem()


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        payload = await response.json(content_type=None)
        if response.status >= 400:
            raise RuntimeError(f"{url} → {response.status} {payload.get('type')}")
        return payload


async def _enroll(
    session: aiohttp.ClientSession, ca: str, jlis: str, phone: Phone, timings: dict[str, list[float]]
) -> None:
    mark = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[step].append(now - mark)
        mark = now

    started = await _post(session, f"{ca}/v1/enrollments", {})
    lap("start")
    data = base64.urlsafe_b64encode(started["signed_data"].encode()).rstrip(b"=").decode()
    signed = await _post(session, f"{jlis}/cards/{phone.card_id}/sign", {"data": data})
    lap("card")
    enrollment = started["enrollment_id"]
    await _post(
        session,
        f"{ca}/v1/enrollments/{enrollment}/jpki-proof",
        {"jpki_certificate": phone.certificate_pem, "signature": signed["signature"]},
    )
    lap("proof")
    signing = await _post(
        session, f"{ca}/v1/enrollments/{enrollment}/signing-certificate", {"csr": phone.signing_csr}
    )
    lap("signing")
    request = phone.signing.sign_jws(
        request_claims(enrollment_id=enrollment, csr=phone.authentication_csr), kid=signing["serial"]
    )
    await _post(session, f"{ca}/v1/enrollments/{enrollment}/authentication-certificate", {"request": request})
    lap("authentication")


async def _cards(session: aiohttp.ClientSession, jlis: str, count: int) -> list[Phone]:
    async def one(n: int) -> Phone:
        issued = await _post(
            session,
            f"{jlis}/cards",
            {
                "name": f"負荷 {n}",
                "address": "群馬県前橋市大手町1番1号",
                "birth_date": "1980-01-01",
                "sex": "1",
            },
        )
        return Phone(issued["card_id"], issued["signing_certificate"])

    phones: list[Phone] = []
    for offset in range(0, count, 8):  # the sandbox makes an RSA key per card: keep it gentle
        phones += await asyncio.gather(*(one(n) for n in range(offset, min(count, offset + 8))))
    return phones


async def measure(ctx: CaBench) -> dict[str, dict[str, Any]]:
    stack = ctx.stack
    ca, jlis = stack.urls["ca"], stack.jlis_url
    count, concurrency, budget_s = (60, 8, 60.0) if ctx.quick else (600, 24, 60.0)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        phones = await _cards(session, jlis, count)
        warm = phones[:concurrency]
        await asyncio.gather(*(_enroll(session, ca, jlis, p, {s: [] for s in STEPS}) for p in warm))
        timings: dict[str, list[float]] = {step: [] for step in STEPS}
        pids = {name: process.pid for name, process in stack.processes.items()}
        if stack.jlis is not None:
            pids["jlis-sandbox"] = stack.jlis.pid
        cpu_before = {name: group_cpu_seconds(pid) for name, pid in pids.items()}
        queue = list(phones[concurrency:])
        done = failed = 0
        deadline = time.monotonic() + budget_s
        started = time.perf_counter()

        async def wallet() -> None:
            nonlocal done, failed
            while queue and time.monotonic() < deadline:
                phone = queue.pop()
                try:
                    await _enroll(session, ca, jlis, phone, timings)
                    done += 1
                except Exception:
                    failed += 1

        await asyncio.gather(*(wallet() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = {name: group_cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    rate = done / elapsed
    per_step = ", ".join(f"{step} {1000 * sum(v) / max(1, len(v)):.1f} ms" for step, v in timings.items())
    per_process = ", ".join(
        f"{name} {1000 * seconds / max(1, done):.1f} ms" for name, seconds in cpu.items() if seconds > 0.01
    )
    ctx.notes += [
        f"enroll: {done} complete enrollments ({failed} failed) in {elapsed:.1f} s, {concurrency} wallets "
        f"at once over HTTP (aiohttp); signer on SoftHSM2; databases {ctx.database}",
        f"enroll: mean latency per step: {per_step}",
        f"enroll: CPU per enrollment by process: {per_process} (2 cores: the sum bounds the rate)",
    ]
    return {"enrollments_per_s": metric(rate, "enrollments/s", "higher", target=100)}
