"""OCSP responder throughput and latency, on the real stack (part ``ocsp`` of ``bench/ca.py``).

One run (loopback only, every loop bounded in count and time):

1. Setup, not timed: a CA process of its own (``python -m tsunagu.ca.app`` with the stack CA's
   environment from ``_service_env``, its own SQLite database, the per-client rate limit raised
   so that one load generator on 127.0.0.1 is not refused, Kafka consumers off so that it does not
   take partitions from the stack's CA) gets the hierarchy from the stack's HSM keys; wallets enroll
   phones against it (``tsunagu.wallet.enroll``, bounded concurrency) and ~20 % of the phones are
   revoked by their owner (``tsunagu.wallet.revoke``); then we wait (bounded) until the refresher
   has pre-signed an answer of the right status for every certificate.
2. Every certificate's request (DER, SHA-1 CertID, no nonce: what clients send) is POSTed once;
   each answer must be ``successful``, have the expected status (revocation time and reason for
   the revoked ones) and verify against the responder certificate it carries.
3. Load: aiohttp in this process (connection reuse), ``CONCURRENCY`` (12) requests in flight over the
   good/revoked mix for ``DURATION_S`` s or ``MAX_REQUESTS`` requests; each answer must be 200 and
   byte-equal to the checked one. Run against one CA process and against ``WORKERS`` uvicorn
   worker processes (``uvicorn tsunagu.ca.app:create_app --factory --workers N``: same database,
   one cache each) after a short unmeasured warm-up; the metrics are the better configuration, the
   notes give both, with the CPU time per answer of the server processes and of the load
   generator. The signer's request counter must not move during a load run: the hot path never
   signs.
4. Where the time goes: the cost per request of each layer, one request at a time in this
   process (domain answer, ASGI endpoint, + the app's middleware, the whole app with its routing);
   and the same load against a bare uvicorn ASGI app answering a constant body of the same size:
   the HTTP + load-generator ceiling of this machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from bench.common import group_cpu_seconds, metric
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.ports import free_port
from tsunagu.devstack.stack import _service_env
from tsunagu.wallet import Enrolled, SandboxCard, enroll, revoke

if TYPE_CHECKING:
    from bench.ca import CaBench

PHONES, QUICK_PHONES = 150, 30  # two certificates each (signing + authentication)
REVOKED_SHARE = 0.2
ENROLL_CONCURRENCY = 8
# The reported figures: 12 requests in flight (≈ 6k/s here, the rate the target names). A second run
# at SATURATION in flight shows what more concurrency buys: a little throughput, much queueing.
CONCURRENCY = int(os.environ.get("TSUNAGU_BENCH_OCSP_CONCURRENCY", "12"))
SATURATION = 32
DURATION_S, QUICK_DURATION_S = 12.0, 3.0
WARMUP_S = 2.0
MAX_REQUESTS = 300_000
WORKERS = 2
LAYER_REQUESTS = 3_000
PRESIGN_TIMEOUT_S = 120.0
REQUEST_HEADERS = {"Content-Type": "application/ocsp-request"}
SIGNER_ROUTES = ('route="/v1/sign"', 'route="/v1/sign/batch"')


@dataclass
class Population:
    """The certificates the load asks about: DER requests, expected status, issuer."""

    issuing: x509.Certificate
    requests: list[bytes] = field(default_factory=list)
    revoked: list[bool] = field(default_factory=list)


@dataclass
class LoadResult:
    completed: int
    errors: int
    elapsed_s: float
    latencies_s: list[float]
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def per_s(self) -> float:
        return self.completed / self.elapsed_s

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    def describe(self) -> str:
        per_answer = 1e6 / max(1, self.completed)
        return (
            f"{self.per_s:,.0f}/s, p50 {self.percentile_ms(0.5):.1f} ms,"
            f" p99 {self.percentile_ms(0.99):.1f} ms ({self.completed:,} answers in {self.elapsed_s:.1f} s,"
            f" {self.errors} errors); CPU per answer: server {self.server_cpu_s * per_answer:.0f} µs,"
            f" load generator {self.client_cpu_s * per_answer:.0f} µs"
        )


def _operator(ctx: CaBench) -> httpx.Auth:
    issuer = ServiceTokenIssuer("operator", load_private_key(ctx.credentials / "operator.key.pem"))
    return ServiceTokenAuth(issuer, "ca")


def _ca_env(ctx: CaBench, port: int, database: Path, **extra: str) -> dict[str, str]:
    stack = ctx.stack
    env = _service_env(stack.config, "ca", port, stack.broker.bootstrap_servers, stack.token)
    values = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "LOG_LEVEL": "WARNING",
        # one load generator on 127.0.0.1 is one client: let it through (the limit is still checked)
        "RATE_LIMIT_PER_S": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        "EVENTS__CONSUMERS_ENABLED": "false",
        "OCSP_REFRESH_INTERVAL_S": "1",
        **extra,
    }
    env.update({f"TSUNAGU_CA_{key}": value for key, value in values.items()})
    return env


@contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _ca_command(port: int, workers: int) -> list[str]:
    if workers == 1:
        return [sys.executable, "-m", "tsunagu.ca.app"]
    return [
        *(sys.executable, "-m", "uvicorn", "tsunagu.ca.app:create_app", "--factory"),
        *("--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)),
        *("--no-server-header", "--no-proxy-headers", "--no-access-log", "--log-level", "warning"),
    ]


async def _until_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the bench CA exited with {process.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the bench CA at {url} is not ready after {timeout_s} s")


async def _ceremony(ctx: CaBench, url: str) -> None:
    """The bench CA's hierarchy from the keys the stack's ceremony made in the HSM."""
    auth = _operator(ctx)
    async with httpx.AsyncClient(timeout=60, auth=auth) as client:
        listed = (await client.get(f"{ctx.stack.urls['ca']}/admin/v1/authorities")).raise_for_status()
        keys = {authority["kind"]: authority["key_id"] for authority in listed.json()}
        response = await client.post(
            f"{url}/admin/v1/hierarchy",
            json={
                "root_key_id": keys["root"],
                "issuing_key_id": keys["issuing"],
                "ocsp_key_id": keys["ocsp"],
            },
        )
        if response.status_code != 201:
            raise RuntimeError(f"bench CA ceremony: {response.status_code} {response.text[:500]}")


async def _enroll_phones(ctx: CaBench, url: str, phones: int) -> list[Enrolled]:
    gate = asyncio.Semaphore(ENROLL_CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as ca,
        httpx.AsyncClient(base_url=ctx.stack.jlis_url, timeout=60) as jlis,
    ):

        async def one(index: int) -> Enrolled:
            async with gate:
                card = await jlis.post(
                    "/cards",
                    json={
                        "name": f"負荷 試験{index}",
                        "address": "群馬県前橋市大手町一丁目1番1号",
                        "birth_date": "1990-04-01",
                        "sex": "2",
                    },
                )
                card.raise_for_status()
                return await enroll(ca, SandboxCard(jlis, card.json()["card_id"]))

        return list(await asyncio.gather(*(one(i) for i in range(phones))))


async def _revoke_some(url: str, phones: list[Enrolled]) -> set[str]:
    chosen = phones[: round(len(phones) * REVOKED_SHARE)]
    revoked: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=60) as ca:
        for phone in chosen:
            revoked.update(await revoke(ca, phone, device_id=phone.device_id, reason="keyCompromise"))
    return revoked


def _population(phones: list[Enrolled], revoked: set[str]) -> Population:
    issuing = x509.load_pem_x509_certificate(phones[0].signing.chain[0].encode())
    population = Population(issuing)
    for phone in phones:
        for credential in (phone.signing, phone.authentication):
            certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
            request = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(certificate, issuing, hashes.SHA1())  # the CertID clients send
                .build()
            )
            population.requests.append(request.public_bytes(Encoding.DER))
            population.revoked.append(credential.serial in revoked)
    return population


def _presigned(database: Path) -> tuple[int, int]:
    """(certificates, those with a pre-signed answer of the right status)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        total = db.execute("SELECT count(*) FROM certificate WHERE not_after > ?", (now,)).fetchone()[0]
        ready = db.execute(
            "SELECT count(*) FROM certificate c JOIN ocsp_response o ON o.serial = c.serial"
            " WHERE (o.status = 'revoked') = (c.revoked_at IS NOT NULL) AND o.next_update > ?",
            (now,),
        ).fetchone()[0]
    return int(total), int(ready)


async def _until_presigned(database: Path, expected: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < PRESIGN_TIMEOUT_S:
        total, ready = await asyncio.to_thread(_presigned, database)
        if total >= expected and ready == total:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the refresher pre-signed {ready} of {total} answers in {PRESIGN_TIMEOUT_S} s")


def _check_answer(der: bytes, revoked: bool, issuing: x509.Certificate) -> None:
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise AssertionError(f"OCSP status {response.response_status}")
    expected = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
    if response.certificate_status is not expected:
        raise AssertionError(f"{response.serial_number:x}: {response.certificate_status}, not {expected}")
    if revoked and (response.revocation_time_utc is None or response.revocation_reason is None):
        raise AssertionError("a revoked answer without revocation time or reason")
    responder = response.certificates[0]
    responder.verify_directly_issued_by(issuing)
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and response.signature_hash_algorithm
    public_key.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )


async def _checked_answers(url: str, population: Population) -> list[bytes]:
    answers = []
    async with aiohttp.ClientSession() as session:
        for body, revoked in zip(population.requests, population.revoked, strict=True):
            async with session.post(f"{url}/ocsp", data=body, headers=REQUEST_HEADERS) as response:
                der = await response.read()
                if response.status != 200 or response.content_type != "application/ocsp-response":
                    raise AssertionError(f"OCSP answered {response.status} {response.content_type}")
            _check_answer(der, revoked, population.issuing)
            answers.append(der)
    return answers


async def _load(
    url: str,
    bodies: list[bytes],
    expected: list[bytes] | None,
    duration_s: float,
    server_group: int | None = None,
    *,
    concurrency: int = CONCURRENCY,
) -> LoadResult:
    """``concurrency`` loops posting the requests round robin until the deadline or MAX_REQUESTS."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        server_cpu, client_cpu = group_cpu_seconds(server_group) if server_group else 0.0, time.process_time()
        started = time.perf_counter()
        deadline = started + duration_s

        async def loop(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.perf_counter() < deadline and len(latencies) + errors < MAX_REQUESTS:
                which = index % len(bodies)
                index += concurrency
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=bodies[which], headers=REQUEST_HEADERS) as response:
                        der = await response.read()
                        ok = response.status == 200 and (expected is None or der == expected[which])
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(loop(offset) for offset in range(concurrency)))
        elapsed = time.perf_counter() - started
        server_cpu = group_cpu_seconds(server_group) - server_cpu if server_group else 0.0
        client_cpu = time.process_time() - client_cpu
    return LoadResult(len(latencies), errors, elapsed, latencies, server_cpu, client_cpu)


async def _signer_sign_requests(ctx: CaBench) -> int:
    """How many sign requests the signer has handled (its Prometheus counter)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{ctx.stack.urls['signer']}/metrics")).raise_for_status().text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tsunagu_http_requests_total{") and any(route in line for route in SIGNER_ROUTES)
    )


async def _measured_run(
    ctx: CaBench,
    url: str,
    process: subprocess.Popen[bytes],
    population: Population,
    answers: list[bytes],
    label: str,
    concurrency: int = CONCURRENCY,
) -> LoadResult:
    # every worker's cache filled first
    await _load(f"{url}/ocsp", population.requests, answers, WARMUP_S, concurrency=concurrency)
    signs_before = await _signer_sign_requests(ctx)
    duration = QUICK_DURATION_S if ctx.quick else DURATION_S
    result = await _load(
        f"{url}/ocsp", population.requests, answers, duration, process.pid, concurrency=concurrency
    )
    signs = await _signer_sign_requests(ctx) - signs_before
    if result.errors or signs:
        raise AssertionError(f"ocsp {label}: {result.errors} bad answers, {signs} signer calls during load")
    ctx.notes.append(
        f"ocsp: {label}, {concurrency} in flight: {result.describe()}; signer calls during the run: 0"
    )
    return result


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _in_process_layers(env: dict[str, str], population: Population) -> str:
    """Per-request cost of each layer, one request at a time in this process (no sockets): the
    domain answer, the ASGI endpoint, the app's middleware around it, the whole app (routing)."""
    from tsunagu.ca.api.ocsp import OcspPost
    from tsunagu.ca.app import create_app
    from tsunagu.ca.settings import CaSettings
    from tsunagu.obs.middleware import ObservabilityMiddleware
    from tsunagu.obs.ratelimit import RateLimitMiddleware

    off = {"TSUNAGU_CA_EVENTS__RELAY_ENABLED": "false", "TSUNAGU_CA_MIGRATE_ON_START": "false"}
    with _environment({**env, **off}):
        settings = CaSettings()
    app = create_app(settings)
    endpoint = OcspPost()
    bodies = population.requests
    sent: deque[Any] = deque(maxlen=2)  # the last answer's start and body messages

    async def send(message: Any) -> None:
        sent.append(message)

    def call(target: Any, index: int) -> Any:
        body = bodies[index % len(bodies)]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/ocsp",
            "raw_path": b"/ocsp",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/ocsp-request"),
                (b"content-length", b"%d" % len(body)),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
            "app": app,
        }
        return target(scope, receive, send)

    timings = {}
    async with app.router.lifespan_context(app):
        responder = app.state.runtime.resources.ocsp
        metrics = app.state.runtime.metrics
        middleware = RateLimitMiddleware(
            ObservabilityMiddleware(endpoint, metrics=metrics, max_body_bytes=settings.max_body_bytes),
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
        )
        layers: dict[str, Callable[[int], Awaitable[Any]]] = {
            "domain answer": lambda i: responder.answer(bodies[i % len(bodies)]),
            "ASGI endpoint": lambda i: call(endpoint, i),
            "+ rate limit and observability middleware": lambda i: call(middleware, i),
            "whole app (+ FastAPI routing)": lambda i: call(app, i),
        }
        for name, layer in layers.items():
            for index in range(len(bodies)):  # warm: every answer in this process's cache
                await layer(index)
            started = time.perf_counter()
            for index in range(LAYER_REQUESTS):
                await layer(index)
            timings[name] = (time.perf_counter() - started) / LAYER_REQUESTS * 1e6
    start, body = sent
    if start["status"] != 200 or ocsp.load_der_ocsp_response(body["body"]).response_status.value != 0:
        raise AssertionError(f"in-process OCSP answered {start!r} {body!r}")
    return ", ".join(f"{name} {micros:.0f} µs" for name, micros in timings.items())


_BARE_APP = """
import sys, uvicorn
BODY = b"\\x00" * int(sys.argv[2])
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/ocsp-response")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


async def _bare_ceiling(ctx: CaBench, population: Population, answer_size: int) -> LoadResult:
    port = free_port()
    log = ctx.stack.config.state_dir / "logs" / "bench-bare-asgi.log"
    command = [sys.executable, "-c", _BARE_APP, str(port), str(answer_size)]
    with _process(command, dict(os.environ), log) as process:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/ocsp"
        await _load(url, population.requests, None, WARMUP_S)
        duration = QUICK_DURATION_S if ctx.quick else DURATION_S
        return await _load(url, population.requests, None, duration, process.pid)


async def _setup(ctx: CaBench, url: str, database: Path) -> tuple[Population, list[bytes]]:
    phones = QUICK_PHONES if ctx.quick else PHONES
    await _ceremony(ctx, url)
    started = time.monotonic()
    enrolled = await _enroll_phones(ctx, url, phones)
    enroll_s = time.monotonic() - started
    revoked = await _revoke_some(url, enrolled)
    population = _population(enrolled, revoked)
    presign_s = await _until_presigned(database, len(population.requests))
    answers = await _checked_answers(url, population)
    ctx.notes.append(
        f"ocsp: {len(population.requests)} certificates of {phones} phones (enrolled in {enroll_s:.0f} s),"
        f" {len(revoked)} revoked by their owner, all pre-signed {presign_s:.1f} s after the last"
        " revocation; every answer checked once (status, revocation time and reason, signature of the"
        " delegated responder, which chains to the issuing CA); load: aiohttp in this process,"
        f" {CONCURRENCY} requests in flight, DER POST, SHA-1 CertID, no nonce, {WARMUP_S:.0f} s warm-up"
        f" then {QUICK_DURATION_S if ctx.quick else DURATION_S:.0f} s, every answer byte-compared"
    )
    return population, answers


async def measure(ctx: CaBench) -> dict[str, dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = (ctx.stack.config.state_dir / "data" / f"ca-ocsp-bench-{port}.db").resolve()
    log = ctx.stack.config.state_dir / "logs" / "bench-ca-ocsp.log"
    env = _ca_env(ctx, port, database)
    results: dict[str, LoadResult] = {}
    with _process(_ca_command(port, 1), env, log) as process:
        await _until_ready(url, process)
        population, answers = await _setup(ctx, url, database)
        results["1 CA process"] = await _measured_run(ctx, url, process, population, answers, "1 CA process")
        saturated = await _measured_run(
            ctx, url, process, population, answers, "1 CA process", concurrency=SATURATION
        )
    layers = await _in_process_layers(env, population)
    ctx.notes.append(f"ocsp: in-process cost per request, one at a time: {layers}")
    workers_env = {**env, "TSUNAGU_CA_MIGRATE_ON_START": "false"}
    with _process(_ca_command(port, WORKERS), workers_env, log) as process:
        await _until_ready(url, process)
        label = f"{WORKERS} uvicorn workers (one cache each, same database)"
        results[label] = await _measured_run(ctx, url, process, population, answers, label)
    bare = await _bare_ceiling(ctx, population, len(answers[0]))
    ctx.notes.append(
        f"ocsp: ceiling here: a bare uvicorn ASGI app answering {len(answers[0])} constant bytes,"
        f" same load: {bare.describe()}"
    )
    best = max(results.values(), key=lambda result: result.per_s)
    return {
        "ocsp_responses_per_s": metric(best.per_s, "responses/s", "higher", 5000),
        "ocsp_p99_ms": metric(best.percentile_ms(0.99), "ms", "lower", 10),
        "ocsp_saturated_responses_per_s": metric(saturated.per_s, "responses/s", "higher"),
        "ocsp_saturated_p99_ms": metric(saturated.percentile_ms(0.99), "ms", "lower"),
    }
