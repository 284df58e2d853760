"""Benchmarks run end to end (quick mode, results to a scratch directory): outbox, idp.

Only that it runs and writes well-formed results is checked here; figures are never asserted in
tests — they go to BENCHMARKS.md from `make bench`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"outbox_relay_events_per_s", "outbox_commit_to_consume_p99_ms", "kafka_raw_produce_events_per_s"}


def test_outbox_benchmark_quick_run_writes_results(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.outbox", "--quick", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((tmp_path / "outbox.json").read_text())
    assert document["benchmark"] == "outbox"
    assert set(document["metrics"]) >= METRICS
    for metric in METRICS:
        entry = document["metrics"][metric]
        assert entry["value"] > 0 and entry["better"] in {"higher", "lower"}
    assert document["machine"]["cpus"] >= 1
    assert "outbox_relay_events_per_s" in (tmp_path / "BENCHMARKS.md").read_text()


IDP_METRICS = {
    "token_client_credentials_per_s",
    "token_client_credentials_p99_ms",
    "token_authorization_code_per_s",
}
PEER_METRICS = {
    "peer_token_client_credentials_per_s",
    "peer_token_client_credentials_p99_ms",
    "peer_token_authorization_code_per_s",
}
HAS_NODE = shutil.which("node") is not None and shutil.which("npm") is not None


def _run_idp_bench(tmp_path: Path, only: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.idp", "--quick", "--only", only, "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,  # npm ci on a machine that never installed the peer; ~30 s otherwise
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document: dict[str, Any] = json.loads((tmp_path / "idp.json").read_text())
    assert document["benchmark"] == "idp"
    for entry in document["metrics"].values():
        assert entry["value"] > 0 and entry["better"] in {"higher", "lower"}
    assert "logins_per_s" not in document["metrics"] or document["metrics"]["logins_per_s"]["value"] > 0
    return document


@pytest.mark.skipif(not HAS_NODE, reason="the oidc-provider peer needs Node.js and npm (CI has them)")
def test_idp_benchmark_peer_quick_run(tmp_path: Path):
    document = _run_idp_bench(tmp_path, "peer")
    assert set(document["metrics"]) == PEER_METRICS  # no ratio without our side in the same run


def test_idp_benchmark_quick_run_writes_results(tmp_path: Path):
    """Our idp on the dev stack, and the peer in the same run when Node.js is there."""
    document = _run_idp_bench(tmp_path, "idp,peer" if HAS_NODE else "idp")
    expected = IDP_METRICS | (PEER_METRICS | {"token_vs_peer_ratio"} if HAS_NODE else set())
    assert set(document["metrics"]) >= expected
    assert "token_client_credentials_per_s" in (tmp_path / "BENCHMARKS.md").read_text()


RUN_METRICS = {
    "make_run_to_serving_s",
    "dev_up_cold_to_serving_s",
    "dev_up_warm_to_serving_s",
    "dev_up_stop_s",
    "make_setup_system_noop_s",
}


def test_run_benchmark_quick_run_times_every_phase(tmp_path: Path):
    """One cold start and one warm restart of ``tsunagu dev up``; every phase of the breakdown is
    found (a progress line of ``dev up`` renamed without the benchmark would drop one)."""
    from bench.run import PHASES

    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--max-wait", "0", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document: dict[str, Any] = json.loads((tmp_path / "run.json").read_text())
    assert set(document["metrics"]) == RUN_METRICS
    assert all(entry["value"] > 0 for entry in document["metrics"].values())
    by_phase = document["notes"][0]
    assert all(phase in by_phase for _, phase in PHASES), by_phase
