"""NGSI-LD entity reads by id on the real stack (the broker process on PostgreSQL, the idp issuing
the writer's token), merged into ``bench/results/broker.json``:

- ``ngsild_reads_per_s`` (target ≥ 2,000): ``GET /ngsi-ld/v1/entities/{id}`` of random entities
  of a public dataset (``--entities`` of them, normalized form, ≈ 0.8 KiB each), closed loop with
  ``--concurrency`` requests in flight over keep-alive connections (aiohttp), for ``--seconds`` or
  ``--count`` answers, whichever comes first. Every answer must be 200.
- ``ngsild_reads_token_per_s`` (no target): the same reads of a per-client dataset, each request
  carrying the reader's access token (RFC 9068 JWT checked, cached by hash, plus the dataset rule).
- ``ngsild_reads_cpu_ms`` / ``ngsild_reads_token_cpu_ms``: the broker process's CPU time per read
  (user + system of its process group; PostgreSQL not counted) — the figure that holds when the
  machine is shared and the wall-clock rate is not.

The per-address rate limit and the per-client quota are lifted for the run (the load generator is
one address and one client); everything else is as deployed.

    .venv/bin/python -m bench.broker_ngsild [--quick] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.common import BROKER_LIMITS_LIFTED, RESULTS_DIR, bench_stack, group_cpu_seconds, metric
from bench.report import publish
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.stack import RunningStack

TENANT = "bench-city"
NOTE = "ngsild: "  # this part's notes in broker.json (the other broker benchmarks keep theirs)
LIFTED = BROKER_LIMITS_LIFTED


def _operator(stack: RunningStack, audience: str) -> httpx.Auth:
    key = load_private_key(stack.config.state_dir / "credentials" / "operator.key.pem")
    return ServiceTokenAuth(ServiceTokenIssuer("operator", key), audience)


async def _party(stack: RunningStack, scope: str) -> tuple[str, str]:
    """A client_credentials client of the bench tenant and its access token for the broker."""
    async with httpx.AsyncClient(base_url=stack.urls["idp"], timeout=60) as idp:
        auth = _operator(stack, "idp")
        tenant = {"id": TENANT, "name_ja": "ベンチ市", "name_en": "Bench City"}
        created = await idp.post("/admin/v1/tenants", json=tenant, auth=auth)
        if created.status_code not in (201, 409):
            created.raise_for_status()
        registered = await idp.post(
            f"/admin/v1/tenants/{TENANT}/clients",
            json={
                "client_name": "bench",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": scope,
            },
            auth=auth,
        )
        registered.raise_for_status()
        client = registered.json()
        token = await idp.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": stack.urls["broker"]},
            auth=(client["client_id"], client["client_secret"]),
        )
        token.raise_for_status()
        return client["client_id"], token.json()["access_token"]


def _entity(n: int, entity_type: str) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{entity_type}:bench-{n:06d}",
        "type": entity_type,
        "temperature": {
            "type": "Property",
            "value": 10 + n % 20,
            "unitCode": "CEL",
            "observedAt": "2026-11-24T00:00:00Z",
        },
        "humidity": {"type": "Property", "value": 40 + n % 50},
        "address": {"type": "Property", "value": {"city": "江別市", "street": f"高砂町{n % 30}番地"}},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{n}"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [141.5 + (n % 100) / 1000, 43.1 + (n // 100) / 1000]},
        },
    }


async def _prepare(stack: RunningStack, entities: int) -> tuple[list[str], list[str], str]:
    writer_id, writer_token = await _party(stack, "ngsi-ld:read ngsi-ld:write")
    reader_id, reader_token = await _party(stack, "ngsi-ld:read")
    broker = stack.urls["broker"]
    async with httpx.AsyncClient(base_url=broker, timeout=60) as client:
        for dataset, entity_type, access in (
            ("weather", "WeatherObserved", "public"),
            ("sensors", "Sensor", [reader_id]),
        ):
            definition = {
                "label_ja": dataset,
                "label_en": dataset,
                "entity_types": [entity_type],
                "access": access,
                "writers": [writer_id],
            }
            response = await client.put(
                f"/internal/v1/tenants/{TENANT}/datasets/{dataset}",
                json=definition,
                auth=_operator(stack, "broker"),
            )
            response.raise_for_status()
        headers = {"Authorization": f"Bearer {writer_token}"}
        ids: dict[str, list[str]] = {"WeatherObserved": [], "Sensor": []}
        for entity_type in ids:
            for start in range(0, entities, 32):
                batch = [_entity(n, entity_type) for n in range(start, min(entities, start + 32))]
                responses = await asyncio.gather(
                    *(client.post("/ngsi-ld/v1/entities", json=e, headers=headers) for e in batch)
                )
                for response in responses:
                    response.raise_for_status()
                ids[entity_type] += [e["id"] for e in batch]
    return ids["WeatherObserved"], ids["Sensor"], reader_token


async def _reads(
    base: str, ids: list[str], *, concurrency: int, seconds: float, count: int, token: str | None
) -> tuple[int, int, float]:
    """(answers, errors, elapsed s) of a closed loop of reads by id."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def worker(seed: int) -> None:
            nonlocal done, errors
            pick = random.Random(seed)
            while time.perf_counter() < deadline and done + errors < count:
                async with session.get(f"/ngsi-ld/v1/entities/{pick.choice(ids)}") as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        for _ in range(concurrency):  # warm the connections and the caches
            async with session.get(f"/ngsi-ld/v1/entities/{ids[0]}") as response:
                await response.read()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done, errors, time.perf_counter() - started


async def measure(
    stack: RunningStack, args: argparse.Namespace, notes: list[str]
) -> dict[str, dict[str, Any]]:
    public, private, token = await _prepare(stack, args.entities)
    base = stack.urls["broker"]
    broker_group = stack.processes["broker"].pid  # started as its own process group
    metrics: dict[str, dict[str, Any]] = {}
    for name, ids, bearer, target in (
        ("ngsild_reads_per_s", public, None, 2000.0),
        ("ngsild_reads_token_per_s", private, token, None),
    ):
        cpu_before = group_cpu_seconds(broker_group)
        answers, errors, elapsed = await _reads(
            base, ids, concurrency=args.concurrency, seconds=args.seconds, count=args.count, token=bearer
        )
        cpu_ms = (group_cpu_seconds(broker_group) - cpu_before) * 1000 / max(answers, 1)
        if errors:
            raise SystemExit(f"{name}: {errors} reads failed")
        rate = answers / elapsed
        metrics[name] = metric(rate, "reads/s", "higher", target)
        metrics[name.replace("_per_s", "_cpu_ms")] = metric(cpu_ms, "ms broker CPU/read", "lower")
        notes.append(
            f"ngsild: {name} {answers:,} reads in {elapsed:.1f} s at concurrency {args.concurrency};"
            f" broker process CPU {cpu_ms:.2f} ms per read (≈ {1000 / cpu_ms:,.0f} reads per CPU-second;"
            " PostgreSQL's backends not counted)"
        )
    notes.append(
        f"ngsild: {args.entities:,} entities per dataset, broker on PostgreSQL, one uvicorn process;"
        " per-address rate limit and per-client quota lifted for the run"
    )
    return metrics


def _print_errors(log: Path) -> None:
    """The broker's logged errors (a failed run's cause), before the state directory goes."""
    if log.exists():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"level": "error"' in line:
                print(line[:4000])


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, short run (smoke run)")
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.entities, args.seconds, args.count = 64, 2.0, 2000
    notes: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="tsunagu-bench-ngsild-") as state,
        bench_stack(Path(state), sqlite=False, service_environment=LIFTED) as stack,
    ):
        try:
            metrics = asyncio.run(measure(stack, args, notes))
        except Exception:
            _print_errors(Path(state) / "logs" / "broker.log")
            raise
    if args.quick:
        notes.append("ngsild: quick run: small scale, not the measurement")
    notes.append("ngsild: load average at the end " + " ".join(f"{value:.2f}" for value in os.getloadavg()))
    print(", ".join(f"{k} {v['value']}" for k, v in metrics.items()))
    publish("broker", metrics, notes, args.output_dir, keep_other=NOTE)


if __name__ == "__main__":
    main()
