"""Signer benchmark: CPU ceiling, HSM ceiling and the signer API, for ES256 and RS256 side by side.

    python -m bench.signer [--seconds 5] [--quick] [--output-dir bench/results]
                           [--concurrency 1,16,32,64] [--batch-sizes 100,1000] [--no-sqlite]

Measures in one run, per algorithm (ES256 = ECDSA P-256, RS256 = RSA-2048 PKCS#1 v1.5):

1. ``sign_<alg>_inprocess_per_s``: ``cryptography`` signs 32-byte payloads (SHA-256 + sign) in a
   loop on one thread: the CPU ceiling.
2. ``sign_<alg>_pkcs11_per_s``: the same on a SoftHSM2 token through python-pkcs11, in a loop
   inside one ``Pkcs11Token.run`` callback (the one PKCS#11 thread): the HSM ceiling.
3. ``sign_<alg>_api_single_per_s``: the signer service as a separate process
   (``python -m tsunagu.signer.app``, a fresh PostgreSQL database, a tansu broker, its own SoftHSM2
   token), ``POST /v1/sign`` with one 32-byte item per call as caller ``ca``, closed loop at each
   ``--concurrency``; the best is the metric.
4. ``sign_<alg>_api_batch_per_s``: ``POST /v1/sign/batch``, signatures/s, best of ``--batch-sizes``.
5. ``sign_api_single_p99_ms``: ES256 ``POST /v1/sign`` open loop at 50 % of the measured
   single-call capacity for ``--seconds`` s; latency from the scheduled send time.

The HTTP load comes from aiohttp in this process (never the server's). A sample of the
signatures of every phase is verified with ``cryptography``: a broken signer fails the run.

Writes ``<output-dir>/signer.json`` and regenerates the report (``BENCHMARKS.md`` at the root for
the default output directory, ``<output-dir>/BENCHMARKS.md`` otherwise). Every process started here
(the server, tansu) is stopped at the end, and the database dropped, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.common import REPO_ROOT, RESULTS_DIR, client_gc_off, metric
from bench.report import publish
from tsunagu.auth import ServiceTokenIssuer, load_private_key, provision_service_credentials
from tsunagu.devstack.ports import free_port
from tsunagu.devstack.softhsm import SoftHsmToken, init_token
from tsunagu.devstack.tansu import TansuBroker

log = logging.getLogger("bench.signer")
say = functools.partial(print, file=sys.stderr, flush=True)

PG_ADMIN_DSN = os.environ.get(
    "TSUNAGU_BENCH_PG_DSN",
    os.environ.get("TSUNAGU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
ALGORITHMS = ("ES256", "RS256")
PAYLOAD_BYTES = 32
POOL = 1024  # distinct payloads, cycled
CALLER = "ca"
SIGNATURE_TOPIC = "tsunagu.signer.signature"
P99_TARGET_MS = 5.0
BATCH_TARGET_SHARE = 0.6
MAX_ERRORS = 200  # a phase gives up after this many failed calls
VERIFY_SAMPLES = 200  # signatures verified per phase, at most

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass
class Config:
    seconds: float
    quick: bool
    output_dir: Path
    concurrencies: list[int]
    batch_sizes: list[int]
    batch_concurrency: int
    sqlite: bool
    notes: list[str] = field(default_factory=list)

    @property
    def warmup(self) -> float:
        return 0.3 if self.quick else 1.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def verify(public_key: PublicKey, algorithm: str, payload: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` (raw r||s for ES256) signs ``payload``."""
    if algorithm == "ES256":
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        if len(signature) != 64:
            raise InvalidSignature(f"ES256 signature of {len(signature)} bytes")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public_key.verify(der, payload, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())


def verify_samples(
    what: str, public_key: PublicKey, algorithm: str, samples: Sequence[tuple[bytes, bytes]]
) -> int:
    if not samples:
        raise RuntimeError(f"{what}: no signature to verify")
    for payload, signature in samples:
        try:
            verify(public_key, algorithm, payload, signature)
        except InvalidSignature:
            raise RuntimeError(f"{what}: a {algorithm} signature does not verify") from None
    return len(samples)


# ---------------------------------------------------------------------------------------------
# 1. In-process cryptography


def inprocess_rate(algorithm: str, payloads: Sequence[bytes], seconds: float) -> tuple[float, int]:
    """Signatures/s of ``cryptography`` on this thread; returns (rate, signatures verified)."""
    if algorithm == "ES256":
        key: Any = ec.generate_private_key(ec.SECP256R1())
        ecdsa = ec.ECDSA(hashes.SHA256())

        def sign(data: bytes) -> bytes:
            return key.sign(data, ecdsa)  # type: ignore[no-any-return]
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

        def sign(data: bytes) -> bytes:
            return key.sign(data, pkcs1, sha256)  # type: ignore[no-any-return]

    der_samples: list[tuple[bytes, bytes]] = []
    count, n = 0, len(payloads)
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(32):
            signature = sign(payloads[count % n])
            if count % 500 == 0 and len(der_samples) < VERIFY_SAMPLES:
                der_samples.append((payloads[count % n], signature))
            count += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    public = key.public_key()
    for payload, signature in der_samples:  # cryptography's ECDSA signatures are DER already
        try:
            if algorithm == "ES256":
                public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            else:
                public.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise RuntimeError(f"in-process {algorithm}: a signature does not verify") from None
    return count / elapsed, len(der_samples)


# ---------------------------------------------------------------------------------------------
# 2. Direct PKCS#11


async def pkcs11_rates(
    token_info: SoftHsmToken, payloads: Sequence[bytes], seconds: float
) -> dict[str, tuple[float, int]]:
    """Signatures/s of one thread signing on the token, per algorithm (rate, verified samples)."""
    from pkcs11 import Mechanism

    from tsunagu.pkcs11 import Pkcs11Settings, Pkcs11Token
    from tsunagu.pkcs11.keys import (
        generate_ec_p256_keypair,
        generate_rsa_keypair,
        to_cryptography_public_key,
    )

    settings = Pkcs11Settings(
        module_path=token_info.module_path,
        token_label=token_info.label,
        user_pin=token_info.user_pin,  # type: ignore[arg-type]
        call_timeout_s=seconds + 60,
    )
    token = Pkcs11Token(settings)
    await token.open()
    results: dict[str, tuple[float, int]] = {}
    try:
        for algorithm in ALGORITHMS:
            label = f"bench-{algorithm.lower()}-{uuid.uuid4().hex[:8]}"

            def generate(session: Any, algorithm: str = algorithm, label: str = label) -> Any:
                if algorithm == "ES256":
                    public, _ = generate_ec_p256_keypair(session, label=label, key_id=label.encode())
                else:
                    public, _ = generate_rsa_keypair(session, label=label, key_id=label.encode(), bits=2048)
                return to_cryptography_public_key(public)

            public_key = await token.run(generate, timeout_s=60)

            def sign_loop(
                session: Any, algorithm: str = algorithm, label: str = label
            ) -> tuple[int, float, list[tuple[bytes, bytes]]]:
                from tsunagu.pkcs11 import find_private_key

                private = find_private_key(session, label=label)
                samples: list[tuple[bytes, bytes]] = []
                count, n = 0, len(payloads)
                started = time.perf_counter()
                deadline = started + seconds
                while True:
                    for _ in range(16):
                        data = payloads[count % n]
                        if algorithm == "ES256":  # SoftHSM has no CKM_ECDSA_SHA256: hash here
                            signature = bytes(
                                private.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
                            )
                        else:  # as the service's backend does: the token hashes
                            signature = bytes(private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
                        if count % 200 == 0 and len(samples) < VERIFY_SAMPLES:
                            samples.append((data, signature))
                        count += 1
                    if time.perf_counter() >= deadline:
                        break
                return count, time.perf_counter() - started, samples

            count, elapsed, samples = await token.run(sign_loop, timeout_s=seconds + 60)
            verified = verify_samples(f"pkcs11 {algorithm}", public_key, algorithm, samples)
            results[algorithm] = (count / elapsed, verified)
    finally:
        await token.close()
    return results


# ---------------------------------------------------------------------------------------------
# Infrastructure: database, server process


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new PostgreSQL database (dropped at the end); yields its SQLAlchemy asyncpg URL."""
    name = f"tsunagu_bench_signer_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def signature_events(db_url: str) -> tuple[int, int]:
    """(signature events in the outbox, of which still unpublished) of a PostgreSQL signer database."""
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE published_at IS NULL) AS left"
            " FROM event_outbox WHERE topic = $1",
            SIGNATURE_TOPIC,
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["n"]), int(row["left"])


class SignerServer:
    """``python -m tsunagu.signer.app`` as a child process in its own session."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["TSUNAGU_SIGNER_PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "tsunagu.signer.app"],
                stdout=output,
                stderr=output,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    async def start(self, session: aiohttp.ClientSession, timeout_s: float = 90.0) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"signer exited with code {self.process.returncode}: {self.log_tail()}")
            try:
                async with session.get(f"{self.base_url}/readyz") as response:
                    last = f"{response.status} {await response.text()}"
                    if response.status == 200:
                        return
            except aiohttp.ClientError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.2)
        raise RuntimeError(f"signer not ready within {timeout_s:g} s ({last}): {self.log_tail()}")

    def cpu_seconds(self) -> float:
        """user + system CPU time of the server process (all its threads)."""
        if self.process is None:
            return 0.0
        try:
            text = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # our own child's session
            process.wait(5)


class Caller:
    """Bearer headers of one calling service (the issuer caches the token and renews it in time)."""

    def __init__(self, name: str, key_file: Path) -> None:
        self.issuer = ServiceTokenIssuer(name, load_private_key(key_file))

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.issuer.token_for('signer')}",
            "Content-Type": "application/json",
        }


async def create_active_key(
    session: aiohttp.ClientSession, base_url: str, operator: Caller, algorithm: str
) -> tuple[str, PublicKey]:
    body: dict[str, Any] = {"purpose": "log", "algorithm": algorithm}
    if algorithm == "RS256":
        body["key_size"] = 2048
    async with session.post(f"{base_url}/v1/keys", json=body, headers=operator.headers()) as response:
        if response.status != 201:
            raise RuntimeError(f"create {algorithm} key: {response.status} {await response.text()}")
        kid = (await response.json())["kid"]
    async with session.post(f"{base_url}/v1/keys/{kid}/activate", headers=operator.headers()) as response:
        if response.status != 200:
            raise RuntimeError(f"activate {algorithm} key: {response.status} {await response.text()}")
        key = await response.json()
    public = serialization.load_pem_public_key(key["public_key_pem"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return kid, public


# ---------------------------------------------------------------------------------------------
# HTTP load (closed and open loop)


@dataclass
class LoadResult:
    calls: int  # successful calls counted
    signatures: int
    errors: int
    seconds: float
    latencies_ms: list[float]  # sorted
    client_cpu_s: float
    server_cpu_s: float
    samples: list[tuple[bytes, bytes]]  # (payload, signature) to verify
    error_examples: list[str] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)  # open loop: actual - scheduled send
    machine_busy: float = 0.0  # share of all CPUs busy during the phase

    @property
    def rate(self) -> float:
        return self.signatures / self.seconds if self.seconds > 0 else 0.0

    def server_cpu_ms_per_call(self) -> float:
        return 1000 * self.server_cpu_s / self.calls if self.calls else float("nan")

    def cpu_note(self) -> str:
        return (
            f"server CPU {self.server_cpu_s / self.seconds:.0%} of one core"
            f" ({self.server_cpu_ms_per_call():.2f} ms CPU per call), client CPU"
            f" {self.client_cpu_s / self.seconds:.0%}; machine {self.machine_busy:.0%} busy"
        )

    def latency_note(self) -> str:
        v = self.latencies_ms
        if not v:
            return "no latency"
        return (
            f"p50 {percentile(v, 50):.1f} / p90 {percentile(v, 90):.1f} / p99 {percentile(v, 99):.1f}"
            f" / max {v[-1]:.1f} ms"
        )


@dataclass(frozen=True)
class Request:
    body: bytes
    payloads: tuple[bytes, ...]


def single_requests(kid: str, payloads: Sequence[bytes]) -> list[Request]:
    return [Request(json.dumps({"key_id": kid, "data": b64url(p)}).encode(), (p,)) for p in payloads]


def batch_requests(kid: str, payloads: Sequence[bytes], size: int, count: int = 4) -> list[Request]:
    requests = []
    for r in range(count):
        items = tuple(payloads[(r * size + i) % len(payloads)] for i in range(size))
        body = {"key_id": kid, "items": [{"data": b64url(p)} for p in items]}
        requests.append(Request(json.dumps(body).encode(), items))
    return requests


def _signatures(status: int, raw: bytes, expected: int) -> list[str]:
    if status != 200:
        raise ValueError(f"HTTP {status}: {raw[:300].decode(errors='replace')}")
    document = json.loads(raw)
    signatures = document["signatures"] if "signatures" in document else [document["signature"]]
    if len(signatures) != expected:
        raise ValueError(f"{len(signatures)} signatures for {expected} items")
    return signatures  # type: ignore[no-any-return]


class _Recorder:
    """Counts outcomes inside the measurement window and keeps a sample for verification."""

    def __init__(self, sample_every: int) -> None:
        self.calls = self.signatures = self.errors = 0
        self.latencies: list[float] = []
        self.samples: list[tuple[bytes, bytes]] = []
        self.error_examples: list[str] = []
        self.sample_every = sample_every
        self.seen = 0

    def ok(self, request: Request, signatures: list[str], latency_s: float, counted: bool) -> None:
        self.seen += 1
        if counted:
            self.calls += 1
            self.signatures += len(signatures)
            self.latencies.append(latency_s * 1000)
        if len(self.samples) < VERIFY_SAMPLES and (self.seen <= 3 or self.seen % self.sample_every == 0):
            step = max(1, len(signatures) // 5)  # a batch: five of its items
            for i in range(0, len(signatures), step):
                self.samples.append((request.payloads[i], unb64url(signatures[i])))

    def failed(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 3:
            self.error_examples.append(what)
        if self.errors >= MAX_ERRORS:
            raise RuntimeError(f"{self.errors} failed calls; first: {self.error_examples}")


async def _call(
    session: aiohttp.ClientSession, url: str, caller: Caller, request: Request
) -> tuple[int, bytes]:
    async with session.post(url, data=request.body, headers=caller.headers()) as response:
        return response.status, await response.read()


async def closed_loop(
    session: aiohttp.ClientSession,
    server: SignerServer,
    url: str,
    caller: Caller,
    requests: Sequence[Request],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> LoadResult:
    """``concurrency`` workers call back to back for ``warmup`` + ``seconds`` s; calls that complete
    within the last ``seconds`` count. Calls carrying many items (batches) are counted over
    [start of the first counted call, last completion] instead, including the drain at the end."""
    recorder = _Recorder(sample_every=max(1, 1000 // max(1, len(requests[0].payloads))))
    batch = len(requests[0].payloads) > 1
    started = time.perf_counter()
    window_start = started + warmup
    stop = window_start + seconds
    first_counted: list[float] = []
    last_done = window_start
    max_calls = int((warmup + seconds) * 50_000)
    issued = 0

    async def worker(offset: int) -> None:
        nonlocal issued, last_done
        index = offset
        while issued < max_calls:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            issued += 1
            request = requests[index % len(requests)]
            index += concurrency
            try:
                status, raw = await _call(session, url, caller, request)
                signatures = _signatures(status, raw, len(request.payloads))
            except (aiohttp.ClientError, ValueError, KeyError, TimeoutError) as exc:
                recorder.failed(f"{type(exc).__name__}: {exc}")
                continue
            t1 = time.perf_counter()
            if batch:
                counted = t0 >= window_start
                if counted:
                    first_counted.append(t0)
                    last_done = max(last_done, t1)
            else:
                counted = window_start <= t1 <= stop
            recorder.ok(request, signatures, t1 - t0, counted)

    cpu0, server0, machine0 = time.process_time(), server.cpu_seconds(), machine_cpu()
    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), warmup + seconds + 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    end = time.perf_counter()
    if batch:
        begin = min(first_counted, default=window_start)
        measured = max(1e-9, last_done - begin)
        cpu_span = end - window_start
    else:
        measured = cpu_span = seconds
    return LoadResult(
        calls=recorder.calls,
        signatures=recorder.signatures,
        errors=recorder.errors,
        seconds=measured,
        latencies_ms=sorted(recorder.latencies),
        # CPU over the whole phase, warm-up included, scaled to the measured window
        client_cpu_s=(time.process_time() - cpu0) * cpu_span / (end - started),
        server_cpu_s=(server.cpu_seconds() - server0) * cpu_span / (end - started),
        samples=recorder.samples,
        error_examples=recorder.error_examples,
        machine_busy=_busy(machine0, machine_cpu()),
    )


def _busy(before: tuple[float, float], after: tuple[float, float]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


async def open_loop(
    session: aiohttp.ClientSession,
    server: SignerServer,
    url: str,
    caller: Caller,
    requests: Sequence[Request],
    rate: float,
    seconds: float,
    warmup: float,
    max_in_flight: int = 512,
) -> LoadResult:
    """Calls sent at fixed times (``rate``/s, absolute schedule) for ``warmup`` + ``seconds`` s;
    latency = completion - scheduled send time (so a late send counts against the server, no
    coordinated omission); the warm-up calls are not counted."""
    recorder = _Recorder(sample_every=50)
    interval = 1.0 / rate
    warm_calls = int(warmup * rate)
    total = warm_calls + max(1, int(seconds * rate))
    slots = asyncio.Semaphore(max_in_flight)
    lags: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(seq: int, scheduled: float) -> None:
        try:
            sent = time.perf_counter()
            request = requests[seq % len(requests)]
            try:
                status, raw = await _call(session, url, caller, request)
                signatures = _signatures(status, raw, 1)
            except (aiohttp.ClientError, ValueError, KeyError, TimeoutError) as exc:
                recorder.failed(f"{type(exc).__name__}: {exc}")
                return
            done = time.perf_counter()
            counted = seq >= warm_calls
            if counted:
                lags.append((sent - scheduled) * 1000)
            recorder.ok(request, signatures, done - scheduled, counted)
        finally:
            slots.release()

    with client_gc_off():  # this process's GC would be counted as the server's latency
        start = time.perf_counter() + 0.01
        hard_stop = start + (warmup + seconds) * 2 + 30
        cpu0 = server0 = 0.0
        machine0 = machine_cpu()
        measure_start = start
        try:
            for seq in range(total):
                scheduled = start + seq * interval
                if seq == warm_calls:
                    cpu0, server0, measure_start = time.process_time(), server.cpu_seconds(), scheduled
                    machine0 = machine_cpu()
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.perf_counter() > hard_stop:
                    raise RuntimeError(f"open loop: sender fell behind ({seq} of {total} sent)")
                await slots.acquire()
                task = asyncio.create_task(one(seq, scheduled))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait_for(asyncio.gather(*pending), 60)
        finally:
            for task in list(pending):
                task.cancel()
    end = time.perf_counter()
    return LoadResult(
        calls=recorder.calls,
        signatures=recorder.signatures,
        errors=recorder.errors,
        seconds=end - measure_start,
        latencies_ms=sorted(recorder.latencies),
        client_cpu_s=time.process_time() - cpu0,
        server_cpu_s=server.cpu_seconds() - server0,
        samples=recorder.samples,
        error_examples=recorder.error_examples,
        send_lag_ms=sorted(lags),
        machine_busy=_busy(machine0, machine_cpu()),
    )


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class ApiFigures:
    single: dict[str, dict[int, LoadResult]] = field(default_factory=dict)  # alg -> c -> result
    batch: dict[str, dict[int, LoadResult]] = field(default_factory=dict)  # alg -> size -> result
    latency: LoadResult | None = None
    latency_rate: float = 0.0
    events: tuple[int, int] | None = None
    calls: int = 0


def server_env(
    *,
    port: int,
    db_url: str,
    bootstrap: str,
    credentials: Any,
    token: SoftHsmToken,
    pin_file: Path,
    data_dir: Path,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUNAGU_SIGNER_")}
    env.update(
        {
            "TSUNAGU_SIGNER_PORT": str(port),
            "TSUNAGU_SIGNER_DATABASE_URL": db_url,
            "TSUNAGU_SIGNER_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "TSUNAGU_SIGNER_AUTH__PRIVATE_KEY_FILE": str(credentials.key_files["signer"]),
            "TSUNAGU_SIGNER_AUTH__TRUST_FILE": str(credentials.trust_file),
            "TSUNAGU_SIGNER_PKCS11__MODULE_PATH": token.module_path,
            "TSUNAGU_SIGNER_PKCS11__TOKEN_LABEL": token.label,
            "TSUNAGU_SIGNER_PKCS11__USER_PIN_FILE": str(pin_file),
            "TSUNAGU_SIGNER_PKCS11__INLINE_CALLS": "true",  # as the dev stack: SoftHSM2, in memory
            "TSUNAGU_SIGNER_LOG_LEVEL": "WARNING",
            # One load generator on one address: the per-address limit (1,000/s) would cap the
            # measurement, not the signer.
            "TSUNAGU_SIGNER_RATE_LIMIT_PER_S": "0",
            "TSUNAGU_SIGNER_DATA_DIR": str(data_dir),
            "SOFTHSM2_CONF": str(token.conf_path),
        }
    )
    return env


async def api_phases(
    config: Config,
    session: aiohttp.ClientSession,
    server: SignerServer,
    operator: Caller,
    caller: Caller,
    payloads: Sequence[bytes],
) -> ApiFigures:
    figures = ApiFigures()
    sign_url, batch_url = f"{server.base_url}/v1/sign", f"{server.base_url}/v1/sign/batch"
    for algorithm in ALGORITHMS:
        # One active key per purpose: activating the RS256 key retires the ES256 one.
        kid, public = await create_active_key(session, server.base_url, operator, algorithm)
        singles = single_requests(kid, payloads)
        figures.single[algorithm] = {}
        for concurrency in config.concurrencies:
            say(f"api {algorithm} single c={concurrency} ...")
            result = await closed_loop(
                session, server, sign_url, caller, singles, concurrency, config.seconds, config.warmup
            )
            verify_samples(f"api {algorithm} single c={concurrency}", public, algorithm, result.samples)
            figures.single[algorithm][concurrency] = result
            figures.calls += result.calls
            say(f"  {result.rate:,.0f} signatures/s, {result.latency_note()}, {result.cpu_note()}")
        if algorithm == "ES256":
            best = max(r.rate for r in figures.single[algorithm].values())
            figures.latency_rate = 0.5 * best
            say(f"api ES256 single open loop at {figures.latency_rate:,.0f}/s ...")
            latency = await open_loop(
                session,
                server,
                sign_url,
                caller,
                singles,
                figures.latency_rate,
                config.seconds,
                config.warmup,
            )
            verify_samples("api ES256 open loop", public, algorithm, latency.samples)
            figures.latency = latency
            figures.calls += latency.calls
            say(f"  {latency.rate:,.0f} calls/s achieved, {latency.latency_note()}, {latency.cpu_note()}")
        figures.batch[algorithm] = {}
        for size in config.batch_sizes:
            batches = batch_requests(kid, payloads, size)
            # one untimed call first: handles cached, allocator warm
            status, raw = await _call(session, batch_url, caller, batches[0])
            _signatures(status, raw, size)
            say(f"api {algorithm} batch {size} c={config.batch_concurrency} ...")
            result = await closed_loop(
                session, server, batch_url, caller, batches, config.batch_concurrency, config.seconds, 0.0
            )
            verify_samples(f"api {algorithm} batch {size}", public, algorithm, result.samples)
            figures.batch[algorithm][size] = result
            figures.calls += result.calls
            say(
                f"  {result.rate:,.0f} signatures/s ({result.calls} calls, {result.latency_note()}),"
                f" {result.cpu_note()}"
            )
    return figures


async def sqlite_phase(
    config: Config,
    session: aiohttp.ClientSession,
    env: dict[str, str],
    log_path: Path,
    operator: Caller,
    caller: Caller,
    payloads: Sequence[bytes],
    concurrency: int,
) -> LoadResult:
    server = SignerServer(env, log_path)
    try:
        await server.start(session)
        kid, public = await create_active_key(session, server.base_url, operator, "ES256")
        result = await closed_loop(
            session,
            server,
            f"{server.base_url}/v1/sign",
            caller,
            single_requests(kid, payloads),
            concurrency,
            config.seconds,
            config.warmup,
        )
        verify_samples("api ES256 single (SQLite)", public, "ES256", result.samples)
        return result
    finally:
        server.stop()


async def run(config: Config) -> dict[str, dict[str, Any]]:
    notes = config.notes
    metrics: dict[str, dict[str, Any]] = {}
    payloads = [os.urandom(PAYLOAD_BYTES) for _ in range(POOL)]
    if config.quick:
        notes.append("quick smoke run: figures are not representative")
    notes.append(
        f"setup: {PAYLOAD_BYTES}-byte random payloads (a pool of {POOL}, cycled); ES256 = ECDSA P-256,"
        " RS256 = RSA-2048 PKCS#1 v1.5, both over SHA-256; load average at start"
        f" {_loadavg()}; {os.cpu_count()} CPUs shared by the server, its database and broker, and the"
        " load generator."
    )
    with tempfile.TemporaryDirectory(prefix="bench-signer-") as scratch_name:
        scratch = Path(scratch_name)
        pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
        hsm_dir = scratch / "softhsm"
        direct_token = init_token(hsm_dir, "bench-direct", pin, so_pin)
        served_token = init_token(hsm_dir, "bench-signer", pin, so_pin)
        # SoftHSM reads its configuration once, when this process first loads the module.
        os.environ["SOFTHSM2_CONF"] = str(direct_token.conf_path)

        # 1. in-process
        for algorithm in ALGORITHMS:
            say(f"in-process {algorithm} ...")
            rate, _verified = inprocess_rate(algorithm, payloads, config.seconds)
            say(f"  {rate:,.0f} signatures/s")
            metrics[f"sign_{algorithm.lower()}_inprocess_per_s"] = metric(rate, "signatures/s", "higher")
        notes.append(
            "inprocess: cryptography (OpenSSL) private_key.sign(payload, ECDSA(SHA256) |"
            f" PKCS1v15+SHA256) in a loop on one thread for {config.seconds:g} s each; the CPU ceiling."
        )

        # 2. direct PKCS#11
        say("pkcs11 direct ...")
        direct = await pkcs11_rates(direct_token, payloads, config.seconds)
        for algorithm, (rate, _) in direct.items():
            say(f"  {algorithm}: {rate:,.0f} signatures/s")
            metrics[f"sign_{algorithm.lower()}_pkcs11_per_s"] = metric(rate, "signatures/s", "higher")
        notes.append(
            "pkcs11: SoftHSM2 through python-pkcs11, key generated in the token, one loop inside one"
            f" Pkcs11Token.run() callback for {config.seconds:g} s per algorithm (ES256: SHA-256 in"
            " Python + CKM_ECDSA; RS256: CKM_SHA256_RSA_PKCS, as the service's backend): the HSM"
            " ceiling of one PKCS#11 thread, which is all one signer process has."
        )

        # 3-5. the API, as a separate process
        credentials = provision_service_credentials(scratch / "credentials", ["signer", "operator", CALLER])
        pin_file = scratch / "user.pin"
        pin_file.write_text(pin, encoding="utf-8")
        pin_file.chmod(0o600)
        operator = Caller("operator", credentials.key_files["operator"])
        caller = Caller(CALLER, credentials.key_files[CALLER])
        broker = TansuBroker(log_path=scratch / "tansu.log").start()
        # keep-alive shorter than uvicorn's 5 s: no reuse of a connection the server is closing
        connector = aiohttp.TCPConnector(
            limit=max([*config.concurrencies, config.batch_concurrency, 64]) * 2, keepalive_timeout=3.0
        )
        timeout = aiohttp.ClientTimeout(total=60)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with fresh_database() as db_url:
                    env = server_env(
                        port=free_port(),
                        db_url=db_url,
                        bootstrap=broker.bootstrap_servers,
                        credentials=credentials,
                        token=served_token,
                        pin_file=pin_file,
                        data_dir=scratch / "data",
                    )
                    server = SignerServer(env, scratch / "signer-pg.log")
                    try:
                        say("starting the signer (PostgreSQL) ...")
                        await server.start(session)
                        figures = await api_phases(config, session, server, operator, caller, payloads)
                        with contextlib.suppress(Exception):
                            await asyncio.sleep(1.0)  # let the relay catch up before counting
                            figures.events = await signature_events(db_url)
                    except BaseException:
                        print("signer log tail:\n" + server.log_tail(), file=sys.stderr)
                        raise
                    finally:
                        server.stop()
                sqlite_result = None
                if config.sqlite:
                    best_c = max(figures.single["ES256"], key=lambda c: figures.single["ES256"][c].rate)
                    say(f"api ES256 single c={best_c} on SQLite ...")
                    env = server_env(
                        port=free_port(),
                        db_url=f"sqlite+aiosqlite:///{scratch / 'signer.db'}",
                        bootstrap=broker.bootstrap_servers,
                        credentials=credentials,
                        token=served_token,
                        pin_file=pin_file,
                        data_dir=scratch / "data",
                    )
                    sqlite_result = await sqlite_phase(
                        config,
                        session,
                        env,
                        scratch / "signer-sqlite.log",
                        operator,
                        caller,
                        payloads,
                        best_c,
                    )
                    say(f"  {sqlite_result.rate:,.0f} signatures/s, {sqlite_result.latency_note()}")
        except BaseException:
            log_file = scratch / "tansu.log"
            if log_file.exists():
                tail = log_file.read_text(errors="replace").splitlines()[-10:]
                print("tansu log tail:\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            broker.stop()

    _api_metrics(config, metrics, figures, sqlite_result)
    return metrics


def _api_metrics(
    config: Config, metrics: dict[str, dict[str, Any]], figures: ApiFigures, sqlite_result: LoadResult | None
) -> None:
    notes = config.notes
    notes.append(
        "api: `python -m tsunagu.signer.app` as its own process (uvicorn, uvloop + httptools, one"
        " worker; LOG_LEVEL=WARNING) on a fresh PostgreSQL database (127.0.0.1, dropped afterwards),"
        " a tansu broker (memory storage; the service's outbox relay publishes the audit events) and"
        " its own SoftHSM2 token with PKCS11__INLINE_CALLS=true as in the dev stack (a call of up to"
        " 8 EC signatures or one RSA signature runs on the event loop's thread when the token is"
        " idle; batches go to the PKCS#11 worker thread); keys created and activated through the API"
        " by `operator` (purpose `log`; the RS256 key's activation retires the ES256 one). Load:"
        " aiohttp in the benchmark process (uvloop), caller `ca` with a cached service token, one"
        " 32-byte `data` item per /v1/sign call selected by key_id, closed loop; calls completing in"
        " the"
        f" {config.seconds:g} s after a {config.warmup:g} s warm-up count. Every call must answer"
        " 200 with the right number of signatures; a sample of every phase is verified."
    )
    for algorithm in ALGORITHMS:
        a = algorithm.lower()
        singles = figures.single[algorithm]
        best_c = max(singles, key=lambda c: singles[c].rate)
        metrics[f"sign_{a}_api_single_per_s"] = metric(singles[best_c].rate, "signatures/s", "higher")
        for c, r in singles.items():
            notes.append(
                f"api {algorithm} single c={c}: {r.rate:,.0f} signatures/s"
                f"{' (metric)' if c == best_c else ''}; latency {r.latency_note()}; {r.cpu_note()};"
                f" {r.errors} failed calls{_errors(r)}."
            )
        batches = figures.batch[algorithm]
        best_size = max(batches, key=lambda s: batches[s].rate)
        hsm = metrics[f"sign_{a}_pkcs11_per_s"]["value"]
        target = round(BATCH_TARGET_SHARE * hsm)
        metrics[f"sign_{a}_api_batch_per_s"] = metric(
            batches[best_size].rate, "signatures/s", "higher", target
        )
        for size, r in batches.items():
            notes.append(
                f"api {algorithm} batch {size} items, c={config.batch_concurrency}: {r.rate:,.0f}"
                f" signatures/s{' (metric)' if size == best_size else ''} = {r.rate / hsm:.0%} of the"
                f" direct PKCS#11 rate; {r.calls} calls, call latency {r.latency_note()}; {r.cpu_note()}"
                f" ({1000 * r.server_cpu_s / max(1, r.signatures):.3f} ms server CPU per signature);"
                f" {r.errors} failed calls{_errors(r)}."
            )
        notes.append(
            f"api {algorithm} batch target = {BATCH_TARGET_SHARE} x sign_{a}_pkcs11_per_s of this run"
            f" ({hsm:,} -> {target:,}). Batches: closed loop, {config.batch_concurrency} calls in"
            " flight after one untimed call; rate = signatures of the calls started in the window /"
            " (last completion - first start), so the drain after the window is included."
        )
    latency = figures.latency
    assert latency is not None
    v = latency.latencies_ms
    p50, p90, p99 = (percentile(v, q) for q in (50, 90, 99))
    metrics["sign_api_single_p99_ms"] = metric(p99, "ms", "lower", target=P99_TARGET_MS)
    metrics["sign_api_single_p50_ms"] = metric(p50, "ms", "lower")
    metrics["sign_api_single_p90_ms"] = metric(p90, "ms", "lower")
    metrics["sign_api_single_max_ms"] = metric(v[-1], "ms", "lower")
    metrics["sign_api_single_latency_rate_per_s"] = metric(latency.rate, "calls/s", "higher")
    lag = latency.send_lag_ms
    notes.append(
        f"latency: ES256 /v1/sign open loop at {figures.latency_rate:,.0f} calls/s (50 % of the best"
        f" closed-loop ES256 rate) for {config.seconds:g} s after a {config.warmup:g} s warm-up;"
        f" {latency.calls} calls, {latency.rate:,.0f}/s achieved, {latency.errors} failed; latency"
        " from the scheduled send time to the complete response (a late send counts):"
        f" p50 {p50:.2f} / p90 {p90:.2f} / p99 {p99:.2f} / max {v[-1]:.1f} ms; the client itself"
        f" sent late by p50 {percentile(lag, 50):.2f} / p99 {percentile(lag, 99):.2f} ms;"
        f" {latency.cpu_note()}; the load generator's own GC off while it measured."
    )
    if figures.events is not None:
        events, unpublished = figures.events
        notes.append(
            f"audit: the outbox holds {events:,} signature events (topic {SIGNATURE_TOPIC}, {unpublished}"
            f" not yet published) for {figures.calls:,} counted successful sign calls plus warm-up calls."
        )
    if sqlite_result is not None:
        r = sqlite_result
        notes.append(
            f"sqlite (not a metric): the same server on SQLite (aiosqlite), ES256 /v1/sign closed loop:"
            f" {r.rate:,.0f} signatures/s; latency {r.latency_note()}; {r.cpu_note()}; {r.errors} failed."
        )


def _errors(result: LoadResult) -> str:
    return f" (e.g. {result.error_examples[0]})" if result.error_examples else ""


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=None, help="seconds per phase (5; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--concurrency", default=None, help="single-call concurrencies (1,16,32,64; quick: 32)"
    )
    parser.add_argument("--batch-sizes", default=None, help="items per batch call (100,1000; quick: 1000)")
    parser.add_argument("--batch-concurrency", type=int, default=2, help="batch calls in flight (2)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite comparison")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 1.0 if args.quick else 5.0
    concurrencies = _ints(args.concurrency or ("32" if args.quick else "1,16,32,64"))
    sizes = _ints(args.batch_sizes or ("1000" if args.quick else "100,1000"))
    if seconds <= 0 or not concurrencies or min(concurrencies) < 1 or args.batch_concurrency < 1:
        parser.error("seconds and concurrencies must be positive")
    if not sizes or min(sizes) < 1 or max(sizes) > 1000:
        parser.error("batch sizes must be within 1..1000 (the signer's MAX_BATCH_ITEMS)")
    return Config(
        seconds=seconds,
        quick=args.quick,
        output_dir=args.output_dir,
        concurrencies=concurrencies,
        batch_sizes=sizes,
        batch_concurrency=args.batch_concurrency,
        sqlite=not args.no_sqlite,
    )


def _run(coroutine: Any) -> Any:
    """asyncio.run on uvloop when it is installed (the client's own overhead is lower)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse_args(argv)
    started = time.monotonic()
    metrics = _run(run(config))
    config.notes.append(
        f"the whole run took {time.monotonic() - started:.0f} s; load average at the end {_loadavg()}"
        " (other work on the machine shows as `machine` busy beyond the server and client shares)."
    )
    publish("signer", metrics, config.notes, config.output_dir)


if __name__ == "__main__":
    main()
