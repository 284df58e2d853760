"""Shared helpers for the benchmarks: machine description and the result file format.

Every benchmark writes ``bench/results/<benchmark>.json`` (or ``--output-dir``) in this shape::

    {
      "benchmark": "outbox",
      "date": "2025-01-01T00:00:00Z",
      "machine": {"cpus": 2, "memory": "23.5 GiB", "python": "3.11.7", ...},
      "metrics": {"<name>": {"value": 1.0, "unit": "events/s", "target": 5000, "better": "higher"}},
      "notes": ["parameters and anything else useful"]
    }

``bench/report.py`` turns all of them into ``BENCHMARKS.md``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import platform
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent
BETTER = ("higher", "lower")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory": _memory(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def metric(value: float, unit: str, better: str, target: float | None = None) -> dict[str, Any]:
    """One entry of ``metrics``; ``value`` is rounded to about three significant digits or more."""
    if better not in BETTER:
        raise ValueError(f"better must be one of {BETTER}, not {better!r}")
    if not math.isfinite(value):
        raise ValueError(f"metric value must be finite, not {value!r}")
    rounded: float | int = round(value) if abs(value) >= 100 else round(value, 1 if abs(value) >= 10 else 2)
    return {"value": rounded, "unit": unit, "target": target, "better": better}


def write_result(
    benchmark: str,
    metrics: dict[str, dict[str, Any]],
    *,
    notes: list[str] | None = None,
    output_dir: Path | None = None,
    keep_other: str | None = None,
) -> Path:
    """Write ``<output_dir>/<benchmark>.json`` (default ``bench/results``) and return its path.

    ``keep_other``: this run measures one part of a benchmark that several scripts share (e.g.
    ``broker``): the file's other metrics are kept, and its notes except those starting with
    ``keep_other`` (this part's note prefix, which the new notes should carry)."""
    for name, entry in metrics.items():
        missing = {"value", "unit", "target", "better"} - set(entry)
        if missing:
            raise ValueError(f"metric {name} lacks {sorted(missing)}")
        if entry["better"] not in BETTER:
            raise ValueError(f"metric {name}: better must be one of {BETTER}")
    directory = output_dir or RESULTS_DIR
    path = directory / f"{benchmark}.json"
    if keep_other is not None and path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        metrics = {**{k: v for k, v in previous.get("metrics", {}).items() if k not in metrics}, **metrics}
        kept = [n for n in previous.get("notes", []) if not n.startswith(keep_other)]
        notes = [*kept, *(notes or [])]
    document: dict[str, Any] = {
        "benchmark": benchmark,
        "date": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "machine": machine_info(),
        "metrics": metrics,
    }
    if notes:
        document["notes"] = list(notes)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat(5)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


async def settle(max_s: float = 30.0, busy_below: float = 0.25, window_s: float = 0.5) -> float:
    """Wait until the machine is quiet — less than ``busy_below`` of it busy over two windows in a
    row — so one phase's aftermath (events still being relayed and consumed) is not measured as
    the next phase's latency; at most ``max_s``. Returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    while time.perf_counter() - started < max_s and quiet < 2:
        busy0, total0 = _machine_busy_ticks()
        await asyncio.sleep(window_s)
        busy1, total1 = _machine_busy_ticks()
        quiet = quiet + 1 if (busy1 - busy0) < busy_below * max(1, total1 - total0) else 0
    return time.perf_counter() - started


PG_SERVER = os.environ.get("TSUNAGU_BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (processes started in it inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# The broker's per-address rate limit and per-client quota, lifted for a load generator that is
# one address and one client (the limits would be measured, not the broker).
BROKER_LIMITS_LIFTED = {
    "TSUNAGU_BROKER_RATE_LIMIT_PER_S": "1000000",
    "TSUNAGU_BROKER_RATE_LIMIT_BURST": "1000000",
    "TSUNAGU_BROKER_CLIENT_RATE_PER_S": "1000000",
    "TSUNAGU_BROKER_CLIENT_BURST": "1000000",
}


@contextmanager
def bench_stack(
    state_dir: Path,
    *,
    sqlite: bool,
    service_environment: Mapping[str, str] | None = None,
    apps: bool = False,
) -> Iterator[Any]:
    """The whole dev stack for a benchmark: services on PostgreSQL (one database each, dropped
    afterwards) unless ``sqlite``, ports outside the ephemeral range, warnings-only logs;
    ``service_environment`` is given to the service processes; ``apps``: the sample apps of
    examples/ and the city's records system too (from the base port + 20). Yields the
    ``RunningStack``."""
    from tsunagu.devstack.ports import free_port_block, free_port_outside
    from tsunagu.devstack.stack import StackConfig, start_stack

    prefix = f"tsunagu_bench_{uuid.uuid4().hex[:8]}"
    block = 27 if apps else 6
    base = free_port_block(block)
    kafka = free_port_outside(base, block_size=block)
    config = StackConfig(
        postgres_url=None if sqlite else f"{PG_SERVER}/{prefix}",
        state_dir=state_dir,
        kafka_port=kafka,
        base_port=base,
        jlis_port=free_port_outside(base, kafka, block_size=block),
        log_level=os.environ.get("TSUNAGU_BENCH_LOG_LEVEL", "WARNING"),
        crl_interval_s=3600.0,
        apps_port=base + 20 if apps else 0,
    )
    with environment(service_environment or {}):
        stack = start_stack(config, lambda _message: None)
    try:
        yield stack
    finally:
        stack.stop()
        if not sqlite:
            asyncio.run(_drop_databases(prefix))


async def _drop_databases(prefix: str) -> None:
    from tsunagu.devstack.postgres import drop_database
    from tsunagu.devstack.stack import SERVICES

    for service in SERVICES:
        await drop_database(f"{prefix}_{service.replace('-', '_')}")


@dataclass
class Latencies:
    values_s: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)  # what the errors were: status or exception

    def failed(self, what: str) -> None:
        self.errors += 1
        self.failures[what] = self.failures.get(what, 0) + 1

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.values_s)
        return (
            ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")
        )

    def _errors(self) -> str:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.failures.items()))
        return f"{self.errors} errors" + (f": {kinds}" if kinds else "")

    def describe(self, what: str) -> str:
        return (
            f"{what}: {len(self.values_s):,} answers in {self.elapsed_s:.1f} s ({self._errors()}),"
            f" p50 {self.percentile_ms(0.5):.1f} ms, p90 {self.percentile_ms(0.9):.1f} ms,"
            f" p99 {self.percentile_ms(0.99):.1f} ms, max {self.percentile_ms(1.0):.1f} ms"
        )


@contextmanager
def client_gc_off() -> Iterator[None]:
    """The load generator's own garbage collector off while it measures (collected before, on
    again after): a full collection in this process — tens of thousands of tasks and latencies —
    would stall the sender and be counted as the server's latency. Reference counting still frees
    nearly everything meanwhile."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[dict[str, Any]],
    headers: Callable[[], dict[str, str]],
    rate: float,
    seconds: float,
) -> Latencies:
    """Send ``rate`` requests/s for ``seconds`` (bodies in turn, ``headers()`` per request); latency
    counted from each scheduled send time (no coordinated omission). This process's GC is off
    meanwhile (:func:`client_gc_off`)."""
    latencies = Latencies()
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []

    async def one(body: dict[str, Any], scheduled: float) -> None:
        try:
            async with session.post(url, json=body, headers=headers()) as response:
                await response.read()
                failure = None if response.status == 200 else str(response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            failure = type(error).__name__
        # A failed or timed-out request counts with the time it took (a lower bound of its
        # latency), so a server that falls behind cannot improve its percentiles by failing.
        latencies.values_s.append(time.perf_counter() - scheduled)
        if failure:
            latencies.failed(failure)

    with client_gc_off():
        started = time.perf_counter()
        for n in range(total):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[n % len(bodies)], scheduled)))
        await asyncio.gather(*tasks)
        latencies.elapsed_s = time.perf_counter() - started
    return latencies


async def enroll_citizens(stack: Any, count: int) -> list[Any]:
    """``count`` citizens enrolled at the stack's CA with sandbox cards (software keys), 8 at a time."""
    from tsunagu.wallet import SandboxCard, enroll

    async with (
        httpx.AsyncClient(base_url=stack.jlis_url, timeout=60) as jlis,
        httpx.AsyncClient(base_url=stack.urls["ca"], timeout=60) as ca,
    ):

        async def one(n: int) -> Any:
            card = await jlis.post(
                "/cards",
                json={
                    "name": f"負荷 {n}",
                    "address": "群馬県前橋市大手町一丁目1番1号",
                    "birth_date": str(date(1970, 1, 1)),
                    "sex": "1",
                },
            )
            card.raise_for_status()
            return await enroll(ca, SandboxCard(jlis, card.json()["card_id"]))

        enrolled: list[Any] = []
        for start in range(0, count, 8):
            enrolled += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 8))))
        return enrolled


def cpu_per_request(used_s: Mapping[str, float], requests: int) -> str:
    """ "signer 370 µs, broker 2867 µs, …": each process group's CPU per request, from the CPU
    seconds it used during a run (groups under 0.05 s left out)."""
    return ", ".join(
        f"{name} {seconds * 1e6 / max(1, requests):.0f} µs"
        for name, seconds in used_s.items()
        if seconds > 0.05
    )


def _histograms(metrics_text: str, name: str) -> dict[str, str]:
    """Per label set of histogram ``name`` on a /metrics page: "<count> (longest ≤ <bucket>)"."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "_bucket{"):
            labels, value = line.rsplit(" ", 1)
            inside = labels[len(name) + 8 : -1]
            bound = inside.split('le="')[1].split('"')[0]
            rest = ",".join(part for part in inside.split(",") if not part.startswith("le="))
            buckets.setdefault(rest, []).append((float(bound), float(value)))
    summaries: dict[str, str] = {}
    for labels, cumulative in sorted(buckets.items()):
        cumulative.sort()
        total = cumulative[-1][1]
        if total:
            longest = next(bound for bound, count in cumulative if count >= total)
            bound = "> 1 s" if longest == float("inf") else f"≤ {longest * 1000:g} ms"
            summaries[labels] = f"{total:.0f} (longest {bound})"
    return summaries


def _gc_summary(metrics_text: str) -> str:
    """ "gen0 120 (longest ≤ 1 ms), …, event loop late by at most ≤ 25 ms" from a service's
    /metrics page."""
    gcs = _histograms(metrics_text, "tsunagu_gc_pause_seconds")
    parts = ["gen" + labels.split('"')[1] + " " + summary for labels, summary in gcs.items()]
    lag = _histograms(metrics_text, "tsunagu_event_loop_lag_seconds").get("")
    if lag:
        parts.append("event loop late by at most " + lag.split("longest ")[1].rstrip(")"))
    return ", ".join(parts)


async def gc_pauses(urls: Mapping[str, str]) -> str:
    """ "broker: gen0 120 (longest ≤ 1 ms), …, event loop late by at most ≤ 5 ms; consent: …":
    the garbage collections each service timed (``tsunagu_gc_pause_seconds``) and the longest
    its event loop was stuck (``tsunagu_event_loop_lag_seconds``) since it started. Both stop
    every request in flight, so they show up in the tail latencies."""
    parts: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for name, url in urls.items():
            try:
                summary = _gc_summary((await client.get(f"{url}/metrics")).text)
            except httpx.HTTPError:
                continue
            if summary:
                parts.append(f"{name}: {summary}")
    return "; ".join(parts)
