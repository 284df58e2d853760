"""idp benchmark: the token endpoint of our OpenID Provider against panva's ``oidc-provider`` (the
peer, ``bench/peers/oidc-provider``), same workload, same load generator, same run. Writes
``bench/results/idp.json`` and regenerates ``BENCHMARKS.md``.

    .venv/bin/python -m bench.idp [--quick] [--only idp,peer] [--seconds S] [--concurrency C]
                                  [--output-dir DIR] [--sqlite]

Workload (``client_credentials``): ``POST /token`` with ``grant_type=client_credentials`` and
``private_key_jwt`` client authentication — a fresh ES256 client assertion per request (unique
``jti``, ``aud`` = the token endpoint URL, ``exp`` 4 minutes ahead), every assertion signed before
the clock starts so that the load generator spends its CPU on HTTP. The answer must be 200 with an
access token; a sample of the tokens is checked (JWT ``at+jwt``, ES256 signature by a key of the
provider's JWKS, ``client_id``, ``exp``). Any error fails the run: a broken provider gives no figure.

1. Our idp: the dev stack (signer on SoftHSM2, ca, jlis-sync, J-LIS sandbox, tansu and the idp as
   processes, PostgreSQL databases dropped afterwards; the idp's per-address rate limits raised so
   that one load generator on 127.0.0.1 is not refused), a tenant and a ``private_key_jwt`` client
   registered through the admin API as ``operator``.
2. The peer: ``node server.mjs`` (single process, keys in memory, ``npm ci`` first when
   ``node_modules`` is missing), the same client (same public key) configured from a JSON file.
3. For each: a short unmeasured warm-up, then a closed loop at ``--concurrency`` requests in flight
   for ``--seconds`` s or ``MAX_REQUESTS`` requests: ``*_per_s``. Then an open loop (absolute
   schedule, latency from the scheduled send time so a late send counts) at half the lower of the
   two closed-loop rates — the same load for both — for ``*_p99_ms``.
4. Code exchange (``authorization_code``, PKCE S256, ``private_key_jwt``): codes minted in bulk
   beforehand (ours: grant + code rows written with the idp's repository, as a completed login
   leaves them; the peer's: its bench-only ``POST /bench/codes``), each exchanged once, closed loop.

Metrics: ``token_client_credentials_per_s``, ``token_client_credentials_p99_ms``,
``peer_token_client_credentials_per_s``, ``peer_token_client_credentials_p99_ms``,
``token_vs_peer_ratio`` (ours / peer, same run), ``token_authorization_code_per_s``,
``peer_token_authorization_code_per_s``. ``logins_per_s`` (authorize → wallet approval → token →
userinfo) is reported once :func:`measure_logins` measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from bench.common import BENCH_DIR, RESULTS_DIR, bench_stack, client_gc_off, group_cpu_seconds, metric
from bench.report import publish
from bench.signer import b64url, machine_cpu, percentile, unb64url

PEER_DIR = BENCH_DIR / "peers" / "oidc-provider"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # our idp accepts exp at most 5 minutes ahead
CONCURRENCY = 32  # closed loop: enough to keep either server busy on 2 cores (see README)
DURATION_S, QUICK_DURATION_S = 12.0, 1.0
WARMUP_S, QUICK_WARMUP_S = 2.0, 0.3
MAX_REQUESTS, QUICK_MAX_REQUESTS = 60_000, 200
LATENCY_SHARE = 0.5  # open loop at this share of the lower closed-loop rate
SAMPLE_EVERY = 500  # verify one access token in so many (and the first)
REDIRECT_URI = "http://127.0.0.1:9/callback"
CODE_PEOPLE = 50  # code exchange: codes of so many people (their pairwise subjects known after the first)
LOGIN_PHONES, LOGIN_CONCURRENCY, MAX_LOGINS = 16, 8, 5_000
CODE_TTL_S = 300  # minted codes live this long (the idp's own are 60 s): minting + run fit in it
# Raised for the benchmark only: one load generator on 127.0.0.1 is one "client address".
IDP_LIMITS = {
    "TSUNAGU_IDP_RATE_LIMIT_PER_S": "1000000",
    "TSUNAGU_IDP_RATE_LIMIT_BURST": "1000000",
    "TSUNAGU_IDP_SENSITIVE_RATE_PER_S": "1000000",
    "TSUNAGU_IDP_SENSITIVE_BURST": "1000000",
}


class BenchError(RuntimeError):
    """The run cannot give a figure (missing tool, broken provider); the message says why."""


# ---------------------------------------------------------------------------------------------
# Client key and assertions


@dataclass(frozen=True)
class ClientKey:
    private: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def generate(cls) -> ClientKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), uuid.uuid4().hex[:16])

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        }

    def sign(self, claims: dict[str, Any]) -> str:
        header = b64url(json.dumps({"alg": "ES256", "kid": self.kid, "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}"
        r, s = decode_dss_signature(self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def client_credentials_forms(count: int) -> list[dict[str, str]]:
    return [{"grant_type": "client_credentials"}] * count


def code_forms(codes: Sequence[str], verifier: str) -> list[dict[str, str]]:
    return [
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        for code in codes
    ]


def token_bodies(
    key: ClientKey, client_id: str, token_url: str, forms: Sequence[dict[str, str]]
) -> list[bytes]:
    """One form body per grant form, each with its own client assertion (fresh jti), signed now."""
    now = int(time.time())
    bodies = []
    for grant in forms:
        assertion = key.sign(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": token_url,
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_S,
            }
        )
        form = {
            **grant,
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        bodies.append(urllib.parse.urlencode(form).encode())
    return bodies


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge); one pair serves every code of a run."""
    verifier = b64url(os.urandom(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def check_access_token(token: str, jwks: dict[str, Any], client_id: str, what: str) -> None:
    """An RFC 9068 access token for our client, ES256-signed by a key of the provider's JWKS."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(unb64url(header_b64))
        payload = json.loads(unb64url(payload_b64))
    except ValueError as exc:
        raise BenchError(f"{what}: the access token is not a JWT ({exc})") from None
    if header.get("alg") != "ES256" or str(header.get("typ", "")).lower() not in {
        "at+jwt",
        "application/at+jwt",
    }:
        raise BenchError(f"{what}: access token header {header}")
    keys = [k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid") and k.get("kty") == "EC"]
    if not keys:
        raise BenchError(f"{what}: no key {header.get('kid')!r} in the provider's JWKS")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64url(keys[0]["x"]), "big"),
        int.from_bytes(unb64url(keys[0]["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    signature = unb64url(signature_b64)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BenchError(f"{what}: access token signature does not verify") from None
    if payload.get("client_id") != client_id or not payload.get("exp", 0) > time.time():
        raise BenchError(f"{what}: access token claims {payload}")


# ---------------------------------------------------------------------------------------------
# Providers under test


@dataclass
class Target:
    """A provider with our client registered: where to post, and whose CPU to count."""

    label: str
    token_url: str
    client_id: str
    jwks: dict[str, Any]
    groups: dict[str, int]  # process name → process group id, for CPU per request
    # Authorization codes for our client as a completed login would leave them: (count, S256
    # challenge) → codes; None when the provider offers no practical way to make them in bulk.
    mint_codes: Callable[[int, str], Awaitable[list[str]]] | None = None
    urls: dict[str, str] = field(default_factory=dict)  # issuer; ca and jlis for logins (ours)

    def cpu_seconds(self) -> dict[str, float]:
        return {name: group_cpu_seconds(group) for name, group in self.groups.items()}


def _check_peer_tools() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise BenchError(
            f"the oidc-provider peer needs Node.js (≥ 20) and npm; not found: {', '.join(missing)}"
            " (install them, or run with --only idp)"
        )


def ensure_peer_installed(directory: Path = PEER_DIR) -> None:
    """``npm ci`` (from package-lock.json) when ``node_modules`` lacks oidc-provider."""
    _check_peer_tools()
    if (directory / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"npm ci in {directory} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


@contextmanager
def peer_process(port: int, client_file: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``node server.mjs`` in a process group of its own; stopped (TERM, then KILL) on exit."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                "node",
                str(PEER_DIR / "server.mjs"),
                "--port",
                str(port),
                "--client-file",
                str(client_file),
                "--code-minting",
            ],
            cwd=PEER_DIR,
            env={**os.environ, "NODE_ENV": "production"},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def discovery(issuer: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> Any:
    """The provider's discovery document, once it answers (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    url = f"{issuer}/.well-known/openid-configuration"
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            if process.poll() is not None:
                raise BenchError(f"{issuer} exited with {process.returncode}: {_tail(log)}")
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    return response.json()
                if response.status_code == 404:
                    raise BenchError(f"GET {url} → 404: the provider has no discovery document (yet)")
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{issuer} not ready after {timeout_s:.0f} s: {_tail(log)}")
            await asyncio.sleep(0.2)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def register_idp_client(idp_url: str, auth: httpx.Auth, key: ClientKey) -> str:
    """A tenant and a confidential ``private_key_jwt`` client through the admin API (operator)."""
    async with httpx.AsyncClient(base_url=idp_url, auth=auth, timeout=30) as admin:
        tenant_id = f"bench-{uuid.uuid4().hex[:8]}"
        body = {"id": tenant_id, "name_ja": "ベンチマーク", "name_en": "Benchmark"}
        response = await admin.post("/admin/v1/tenants", json=body)
        if response.status_code in (404, 405):
            raise BenchError(
                "the idp has no admin API yet (POST /admin/v1/tenants → 404): run with --only peer"
            )
        if response.status_code >= 300:
            raise BenchError(f"POST /admin/v1/tenants → {response.status_code} {response.text[:500]}")
        metadata = {
            "client_name": "bench",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": {"keys": [key.public_jwk()]},
            "grant_types": ["client_credentials", "authorization_code"],
            "response_types": ["code"],
            "redirect_uris": [REDIRECT_URI],
            "id_token_signed_response_alg": "ES256",
        }
        response = await admin.post(f"/admin/v1/tenants/{tenant_id}/clients", json=metadata)
        if response.status_code >= 300:
            raise BenchError(
                f"POST /admin/v1/tenants/{tenant_id}/clients → {response.status_code} {response.text[:500]}"
            )
        return str(response.json()["client_id"])


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class LoadResult:
    ok: int
    seconds: float
    latencies_ms: list[float]  # sorted
    cpu_s: dict[str, float]  # server processes, and "load generator"
    machine_busy: float

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def describe(self, unit: str = "token") -> str:
        cpu = ", ".join(
            f"{name} {seconds / max(1, self.ok) * 1e6:.0f} µs" for name, seconds in self.cpu_s.items()
        )
        return (
            f"{self.per_s:,.0f}/s, p50 {self.p(50):.1f} ms, p99 {self.p(99):.1f} ms"
            f" ({self.ok:,} {unit}s in {self.seconds:.1f} s, 0 errors); CPU per {unit}: {cpu};"
            f" machine {self.machine_busy:.0%} busy"
        )


class _Checker:
    """Every answer must be 200 with an access token; one in ``SAMPLE_EVERY`` is verified fully."""

    def __init__(self, target: Target, *, id_token: bool = False) -> None:
        self.target = target
        self.id_token = id_token
        self.seen = 0

    def __call__(self, status: int, raw: bytes) -> None:
        if status != 200 or b'"access_token"' not in raw or (self.id_token and b'"id_token"' not in raw):
            raise BenchError(f"{self.target.label}: POST /token → {status} {raw[:300]!r}")
        if self.seen % SAMPLE_EVERY == 0:
            check_access_token(
                json.loads(raw)["access_token"], self.target.jwks, self.target.client_id, self.target.label
            )
        self.seen += 1


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.read()


def _snapshot(target: Target) -> tuple[dict[str, float], float, tuple[float, float]]:
    return target.cpu_seconds(), time.process_time(), machine_cpu()


def _result(
    target: Target,
    before: tuple[dict[str, float], float, tuple[float, float]],
    ok: int,
    seconds: float,
    latencies: list[float],
) -> LoadResult:
    server0, client0, machine0 = before
    server1, client1, machine1 = _snapshot(target)
    cpu = {name: server1[name] - server0[name] for name in server0}
    cpu["load generator"] = client1 - client0
    total = machine1[1] - machine0[1]
    busy = (machine1[0] - machine0[0]) / total if total > 0 else 0.0
    return LoadResult(ok, seconds, sorted(latencies), cpu, busy)


async def closed_loop(
    session: aiohttp.ClientSession,
    target: Target,
    bodies: Sequence[bytes],
    concurrency: int,
    seconds: float,
    *,
    id_token: bool = False,
) -> LoadResult:
    """``concurrency`` workers post one body after another until ``seconds`` or the bodies run out."""
    check = _Checker(target, id_token=id_token)
    latencies: list[float] = []
    feed = iter(bodies)
    before = _snapshot(target)
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        for body in feed:
            if time.perf_counter() >= deadline:
                return
            sent = time.perf_counter()
            try:
                status, raw = await _post(session, target.token_url, body)
            except aiohttp.ClientError as exc:
                raise BenchError(f"{target.label}: POST /token: {type(exc).__name__} {exc}") from None
            latencies.append((time.perf_counter() - sent) * 1000)
            check(status, raw)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), seconds + 60)
    elapsed = time.perf_counter() - started
    return _result(target, before, len(latencies), elapsed, latencies)


async def open_loop(
    session: aiohttp.ClientSession, target: Target, bodies: Sequence[bytes], rate: float, seconds: float
) -> LoadResult:
    """Requests sent at fixed times (``rate``/s) for ``seconds`` s (at most ``len(bodies)``);
    latency = completion − scheduled send time, so a late send counts against the server."""
    check = _Checker(target)
    latencies: list[float] = []
    total = min(len(bodies), max(1, int(rate * seconds)))
    interval = 1.0 / rate
    slots = asyncio.Semaphore(1024)
    pending: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def one(body: bytes, scheduled: float) -> None:
        try:
            status, raw = await _post(session, target.token_url, body)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            check(status, raw)
        except (BenchError, aiohttp.ClientError) as exc:
            failures.append(exc)
        finally:
            slots.release()

    before = _snapshot(target)
    start = time.perf_counter() + 0.01
    try:
        for index in range(total):
            if failures:
                break
            scheduled = start + index * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > seconds + 30:
                raise BenchError(f"{target.label}: open loop fell behind ({index} of {total} sent)")
            await slots.acquire()
            task = asyncio.create_task(one(body=bodies[index], scheduled=scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), 60)
    finally:
        for task in list(pending):
            task.cancel()
    if failures:
        raise BenchError(f"{target.label}: {failures[0]}")
    return _result(target, before, len(latencies), time.perf_counter() - start, latencies)


@dataclass
class Figures:
    closed: LoadResult
    latency: LoadResult | None = None


@dataclass
class Run:
    quick: bool
    seconds: float
    concurrency: int
    key: ClientKey = field(default_factory=ClientKey.generate)
    notes: list[str] = field(default_factory=list)

    @property
    def max_requests(self) -> int:
        return QUICK_MAX_REQUESTS if self.quick else MAX_REQUESTS

    @property
    def warmup_s(self) -> float:
        return QUICK_WARMUP_S if self.quick else WARMUP_S


def _connector(concurrency: int) -> aiohttp.TCPConnector:
    """At most ``concurrency`` connections (keep-alive): in the open loop, requests beyond them wait
    for a connection (their latency counts from the scheduled time) instead of opening more."""
    return aiohttp.TCPConnector(limit=concurrency)


async def throughput(run: Run, target: Target) -> LoadResult:
    forms = client_credentials_forms
    async with aiohttp.ClientSession(connector=_connector(run.concurrency)) as session:
        warm = token_bodies(run.key, target.client_id, target.token_url, forms(min(run.max_requests, 2000)))
        warmed = await closed_loop(session, target, warm, run.concurrency, run.warmup_s)
        # enough for three times the warm-up's rate (still warming up: the JIT, the pools); a run
        # that uses them all up ends early, its rate is still right
        count = min(run.max_requests, int(warmed.per_s * run.seconds * 3) + 1000)
        signing = time.perf_counter()
        bodies = token_bodies(run.key, target.client_id, target.token_url, forms(count))
        signing_s = time.perf_counter() - signing
        result = await closed_loop(session, target, bodies, run.concurrency, run.seconds)
    run.notes.append(
        f"{target.label}: client_credentials, closed loop, {run.concurrency} in flight: {result.describe()}"
        f" ({len(bodies):,} assertions signed beforehand in {signing_s:.1f} s)"
    )
    return result


async def code_exchange(run: Run, target: Target, count: int) -> LoadResult:
    """``authorization_code`` (PKCE S256, private_key_jwt): codes minted in bulk beforehand, each
    exchanged once for an access token and an ID token; closed loop as for client_credentials."""
    assert target.mint_codes is not None
    verifier, challenge = pkce_pair()
    async with aiohttp.ClientSession(connector=_connector(run.concurrency)) as session:
        warm_codes = await target.mint_codes(min(count, 200), challenge)
        warm = token_bodies(run.key, target.client_id, target.token_url, code_forms(warm_codes, verifier))
        await closed_loop(session, target, warm, run.concurrency, run.warmup_s, id_token=True)
        minting = time.perf_counter()
        codes = await target.mint_codes(count, challenge)
        minting_s = time.perf_counter() - minting
        bodies = token_bodies(run.key, target.client_id, target.token_url, code_forms(codes, verifier))
        result = await closed_loop(session, target, bodies, run.concurrency, run.seconds, id_token=True)
    run.notes.append(
        f"{target.label}: authorization_code, closed loop, {run.concurrency} in flight:"
        f" {result.describe('exchange')}"
        f" ({len(codes):,} codes minted beforehand in {minting_s:.1f} s)"
    )
    return result


async def latency(run: Run, target: Target, rate: float) -> LoadResult:
    async with aiohttp.ClientSession(connector=_connector(run.concurrency)) as session:
        forms = client_credentials_forms(max(1, int(rate * run.seconds)))
        bodies = token_bodies(run.key, target.client_id, target.token_url, forms)
        with client_gc_off():  # this process's GC would be counted as the server's latency
            result = await open_loop(session, target, bodies, rate, run.seconds)
    run.notes.append(f"{target.label}: client_credentials, open loop at {rate:,.0f}/s: {result.describe()}")
    return result


# ---------------------------------------------------------------------------------------------
# The two sides


@contextmanager
def idp_target(run: Run, state_dir: Path, sqlite: bool) -> Iterator[Target]:
    """The dev stack with our idp, a client registered through the admin API."""
    from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
    from tsunagu.devstack.stack import _database_url

    started = time.monotonic()
    with bench_stack(state_dir, sqlite=sqlite, service_environment=IDP_LIMITS) as stack:
        try:
            run.notes.append(
                f"idp: dev stack up in {time.monotonic() - started:.0f} s (signer on SoftHSM2, ca,"
                f" jlis-sync, tansu, idp as processes; databases {'SQLite' if sqlite else 'PostgreSQL'});"
                " the idp's per-address rate limits raised for the load generator"
            )
            url = stack.urls["idp"]
            credentials = state_dir / "credentials"
            auth = ServiceTokenAuth(
                ServiceTokenIssuer("operator", load_private_key(credentials / "operator.key.pem")), "idp"
            )
            client_id = asyncio.run(register_idp_client(url, auth, run.key))
            try:
                config_doc = asyncio.run(
                    discovery(url, stack.processes["idp"], state_dir / "logs" / "idp.log")
                )
            except BenchError:  # no discovery yet: the endpoints services/idp/README.md names
                config_doc = {"token_endpoint": f"{url}/token", "jwks_uri": f"{url}/jwks"}
            jwks_response = httpx.get(config_doc["jwks_uri"], timeout=10)
            if jwks_response.status_code != 200:
                raise BenchError(f"GET {config_doc['jwks_uri']} → {jwks_response.status_code}")
            jwks = jwks_response.json()
            groups = {"idp": stack.processes["idp"].pid, "signer": stack.processes["signer"].pid}
            minter = _idp_code_minter(_database_url(stack.config, "idp"), client_id)
            urls = {"issuer": url, "ca": stack.urls["ca"], "jlis": stack.jlis_url}
            yield Target("idp", config_doc["token_endpoint"], client_id, jwks, groups, minter, urls)
        except BenchError as exc:  # the state directory goes with the run: keep what the logs said
            logs = state_dir / "logs"
            raise BenchError(f"{exc}\n--- idp log ---\n{_tail(logs / 'idp.log', 40)}") from None


def _idp_code_minter(database_url: str, client_id: str) -> Callable[[int, str], Awaitable[list[str]]]:
    """Codes as ``/login/{tx}/complete`` leaves them (a grant and its code, the code's SHA-256
    stored), written straight into the idp's database with its own repository: a wallet login per
    code would measure logins, not code exchange. The people come from a pool of
    ``CODE_PEOPLE``, so most pairwise subjects are already remembered, as for returning users."""

    async def mint(count: int, challenge: str) -> list[str]:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        from tsunagu.idp.domain.opaque import new_secret, token_hash
        from tsunagu.idp.store.tokens import CodeRecord, GrantRecord, TokenRepository

        engine = create_async_engine(database_url)
        codes: list[str] = []
        try:
            async with AsyncSession(engine) as session, session.begin():
                repository = TokenRepository(session)
                now = datetime.now(UTC)
                for index in range(count):
                    grant = GrantRecord(
                        id=new_secret(),
                        client_id=client_id,
                        user_number=f"{900000000000 + index % CODE_PEOPLE}",
                        session_id=None,
                        certificate_serial=None,
                        scope="openid",
                        claims=None,
                        authorization_details=None,
                        auth_time=now,
                        acr="urn:tsunagu:acr:jpki-proofed",
                        amr=["hwk", "user", "x509"],
                        dpop_jkt=None,
                        created_at=now,
                    )
                    code = new_secret()
                    await repository.add_grant(grant)
                    await repository.add_code(
                        CodeRecord(
                            code_hash=token_hash(code),
                            grant_id=grant.id,
                            client_id=client_id,
                            redirect_uri=REDIRECT_URI,
                            code_challenge=challenge,
                            nonce=uuid.uuid4().hex,
                            dpop_jkt=None,
                            expires_at=now + timedelta(seconds=CODE_TTL_S),
                            used_at=None,
                        )
                    )
                    codes.append(code)
        finally:
            await engine.dispose()
        return codes

    return mint


@contextmanager
def peer_target(run: Run, state_dir: Path) -> Iterator[Target]:
    """oidc-provider with the same client (same public key), one process on loopback."""
    from tsunagu.devstack.ports import free_port

    ensure_peer_installed()
    version = json.loads((PEER_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())[
        "version"
    ]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    client_id = "bench-peer-client"
    client_file = state_dir / "peer-client.json"
    client_file.write_text(
        json.dumps(
            {
                "client_id": client_id,
                "jwks": {"keys": [run.key.public_jwk()]},
                "redirect_uris": [REDIRECT_URI],
            }
        )
    )
    port = free_port()
    log = state_dir / "peer.log"
    with peer_process(port, client_file, log) as process:
        config_doc = asyncio.run(discovery(f"http://127.0.0.1:{port}", process, log))
        jwks = httpx.get(config_doc["jwks_uri"], timeout=10).raise_for_status().json()
        run.notes.append(
            f"peer: oidc-provider {version} on Node.js {node}, one process, ES256 keys in memory,"
            " JWT access tokens for a default resource, jti kept in memory (bench/peers/oidc-provider)"
        )
        issuer = config_doc["issuer"]

        async def mint_codes(count: int, challenge: str) -> list[str]:
            codes: list[str] = []
            async with httpx.AsyncClient(timeout=120) as client:
                while len(codes) < count:
                    query = {
                        "count": str(min(5000, count - len(codes))),
                        "redirect_uri": REDIRECT_URI,
                        "code_challenge": challenge,
                    }
                    response = await client.post(f"{issuer}/bench/codes", params=query)
                    response.raise_for_status()
                    codes += response.json()["codes"]
            return codes

        groups = {"peer": process.pid}
        yield Target("peer", config_doc["token_endpoint"], client_id, jwks, groups, mint_codes)


# ---------------------------------------------------------------------------------------------
# Logins (not reported until they work)


class LoginsUnavailable(Exception):
    """The idp answers 404 on a step of the login: the flow is not there (yet)."""


async def _enroll_phones(target: Target, phones: int) -> list[Any]:
    """Citizens with a phone each (software keys), enrolled at the stack's CA with sandbox cards."""
    from tsunagu.wallet import SandboxCard, enroll

    gate = asyncio.Semaphore(4)
    async with (
        httpx.AsyncClient(base_url=target.urls["ca"], timeout=60) as ca,
        httpx.AsyncClient(base_url=target.urls["jlis"], timeout=60) as jlis,
    ):

        async def one(index: int) -> Any:
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

        return list(await asyncio.gather(*(one(index) for index in range(phones))))


def _step(response: httpx.Response, step: str, expected: int) -> httpx.Response:
    if response.status_code == 404 and step in {"authorize", "token", "userinfo"}:
        raise LoginsUnavailable(f"{step} → 404")
    if response.status_code != expected:
        raise BenchError(f"login: {step} → {response.status_code} {response.text[:300]}")
    return response


async def one_login(
    run: Run, target: Target, browser: httpx.AsyncClient, wallet: httpx.AsyncClient, phone: Any
) -> None:
    """authorize → wallet approval → complete → token (code + PKCE) → userinfo, as an RP and a
    browser that has no session yet (its cookies cleared) would do it."""
    from tsunagu.wallet import decide_login, fetch_login

    browser.cookies.clear()
    verifier, challenge = pkce_pair()
    state = uuid.uuid4().hex
    parameters = {
        "response_type": "code",
        "client_id": target.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": state,
        "nonce": uuid.uuid4().hex,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    started = _step(await browser.get("/authorize", params=parameters), "authorize", 303)
    tx = started.headers["location"].removeprefix("/login/")
    transaction = await fetch_login(wallet, tx)
    decided = await decide_login(wallet, transaction, phone.authentication)
    if decided != "approved":
        raise BenchError(f"login: the wallet's approval left the transaction {decided}")
    done = _step(await browser.get(f"/login/{tx}/complete"), "complete", 303)
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(done.headers["location"]).query))
    if answer.get("state") != state or "code" not in answer:
        raise BenchError(f"login: the RP got {sorted(answer)} at its redirect URI")
    form = code_forms([answer["code"]], verifier)
    body = token_bodies(run.key, target.client_id, target.token_url, form)[0]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    tokens = _step(await browser.post(target.token_url, content=body, headers=headers), "token", 200).json()
    if "id_token" not in tokens:
        raise BenchError("login: no ID token")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    claims = _step(await browser.get("/userinfo", headers=bearer), "userinfo", 200).json()
    if not claims.get("sub"):
        raise BenchError(f"login: userinfo answered {claims}")


async def measure_logins(run: Run, target: Target) -> LoadResult | None:
    """Complete logins per second: ``/authorize`` → wallet approval (signed with a phone's
    authentication certificate, checked by the idp with the CA) → ``/login/{tx}/complete`` →
    ``/token`` (code + PKCE, private_key_jwt) → ``/userinfo``; ``LOGIN_CONCURRENCY`` logins at a
    time, each by one of ``LOGIN_PHONES`` enrolled phones, for ``--seconds`` s or
    ``MAX_LOGINS``. None (and no figure) while a step of the flow answers 404."""
    if not {"ca", "jlis"} <= set(target.urls):
        return None
    phones = await _enroll_phones(target, 2 if run.quick else LOGIN_PHONES)
    issuer = target.urls["issuer"]
    latencies: list[float] = []
    limit = 5 if run.quick else MAX_LOGINS
    before = _snapshot(target)
    started = time.perf_counter()
    deadline = started + run.seconds
    counter = iter(range(limit))

    async def worker(index: int) -> None:
        async with (
            httpx.AsyncClient(base_url=issuer, timeout=30) as browser,
            httpx.AsyncClient(base_url=issuer, timeout=30) as wallet,
        ):
            for number in counter:
                if time.perf_counter() >= deadline:
                    return
                sent = time.perf_counter()
                await one_login(run, target, browser, wallet, phones[(index + number) % len(phones)])
                latencies.append((time.perf_counter() - sent) * 1000)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(index) for index in range(LOGIN_CONCURRENCY))), run.seconds + 120
        )
    except LoginsUnavailable as exc:
        run.notes.append(f"logins_per_s not reported: the idp's login flow is not there yet ({exc})")
        return None
    result = _result(target, before, len(latencies), time.perf_counter() - started, latencies)
    run.notes.append(
        f"idp: logins (authorize → wallet approval → complete → token → userinfo), {LOGIN_CONCURRENCY} at a"
        f" time by {len(phones)} enrolled phones: {result.describe('login')}"
    )
    return result


# ---------------------------------------------------------------------------------------------
# The run


def run_bench(
    run: Run, only: list[str], state_dir: Path, sqlite: bool, latency_rate: float | None = None
) -> dict[str, dict[str, Any]]:
    results: dict[str, Figures] = {}
    logins: LoadResult | None = None
    sides: dict[str, Callable[[], Any]] = {
        "idp": lambda: idp_target(run, state_dir / "stack", sqlite),
        "peer": lambda: peer_target(run, state_dir),
    }
    if "peer" in only:
        _check_peer_tools()  # fail before the stack starts, not after
    codes: dict[str, LoadResult] = {}
    with ExitStack() as up:  # both sides up for the whole run; each one idles while the other is measured
        targets = {name: up.enter_context(sides[name]()) for name in only}
        for name, target in targets.items():
            results[name] = Figures(asyncio.run(throughput(run, target)))
        rate = latency_rate or LATENCY_SHARE * min(figures.closed.per_s for figures in results.values())
        for name, target in targets.items():
            results[name].latency = asyncio.run(latency(run, target, rate))
        for name, target in targets.items():
            if target.mint_codes is None:
                run.notes.append(
                    f"{name}: code exchange (authorization_code) not measured: no practical way to issue"
                    " codes in bulk yet"
                )
                continue
            # exchanging a code costs more than client_credentials: as many codes as that rate needs
            count = min(run.max_requests, int(results[name].closed.per_s * run.seconds * 1.2) + 100)
            codes[name] = asyncio.run(code_exchange(run, target, count))
        if "idp" in targets:
            logins = asyncio.run(measure_logins(run, targets["idp"]))
    run.notes.append(
        f"workload: POST /token client_credentials, private_key_jwt (ES256 assertion, fresh jti, aud ="
        f" token endpoint) per request; aiohttp in this process (keep-alive); {run.warmup_s:.1f} s warm-up,"
        f" then {run.seconds:.0f} s or {run.max_requests:,} requests closed loop at {run.concurrency} in"
        f" flight (*_per_s), then {run.seconds:.0f} s open loop at {rate:,.0f}/s"
        + (" (--latency-rate)" if latency_rate else f" = {LATENCY_SHARE:.0%} of the lower closed-loop rate")
        + f", the same for both, at most {run.concurrency} connections (*_p99_ms, from the scheduled"
        " send time; the load generator's own GC off meanwhile)"
    )
    metrics: dict[str, dict[str, Any]] = {}
    for name, prefix in (("idp", "token"), ("peer", "peer_token")):
        if name in results:
            figures = results[name]
            assert figures.latency is not None
            metrics[f"{prefix}_client_credentials_per_s"] = metric(figures.closed.per_s, "tokens/s", "higher")
            metrics[f"{prefix}_client_credentials_p99_ms"] = metric(figures.latency.p(99), "ms", "lower")
    for name, prefix in (("idp", "token"), ("peer", "peer_token")):
        if name in codes:
            metrics[f"{prefix}_authorization_code_per_s"] = metric(codes[name].per_s, "exchanges/s", "higher")
    if "idp" in results and "peer" in results:
        ratio = results["idp"].closed.per_s / results["peer"].closed.per_s
        metrics["token_vs_peer_ratio"] = metric(ratio, "ratio", "higher", 1)
    if logins is not None:
        metrics["logins_per_s"] = metric(logins.per_s, "logins/s", "higher")
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a handful of requests (smoke run)")
    parser.add_argument("--only", default="idp,peer", help="comma-separated: idp, peer")
    parser.add_argument("--seconds", type=float, default=None, help=f"per load phase ({DURATION_S:.0f})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="closed loop, in flight")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="open loop, requests/s (default: half the lower rate)",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--sqlite", action="store_true", help="services on SQLite (default PostgreSQL)")
    args = parser.parse_args(argv)
    only = [side.strip() for side in args.only.split(",") if side.strip()]
    if not only or set(only) - {"idp", "peer"}:
        parser.error("--only takes idp and/or peer")
    seconds = args.seconds if args.seconds is not None else (QUICK_DURATION_S if args.quick else DURATION_S)
    run = Run(quick=args.quick, seconds=min(seconds, 60.0), concurrency=max(1, min(args.concurrency, 1024)))
    try:
        with tempfile.TemporaryDirectory(prefix="tsunagu-bench-idp-") as state:
            metrics = run_bench(run, only, Path(state), args.sqlite, args.latency_rate)
    except BenchError as exc:
        raise SystemExit(f"bench.idp: {exc}") from None
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    run.notes.append(f"load average at the end {load}")
    publish("idp", metrics, run.notes, args.output_dir)


if __name__ == "__main__":
    main()
