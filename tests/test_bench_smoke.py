"""The outbox benchmark runs end to end (quick mode, results to a scratch directory).

Only that it runs and writes well-formed results is checked here; figures are never asserted in
tests — they go to BENCHMARKS.md from `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
