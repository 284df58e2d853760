"""CA benchmarks on the real stack (signer on SoftHSM2, jlis-sync, J-LIS sandbox, tansu, the CA
process), written together to ``bench/results/ca.json``:

- ``enrollments_per_s``: complete enrollments (challenge → card proof → signing and authentication
  certificates) over HTTP, many wallets at once (``bench/ca_enroll.py``);
- ``ocsp_responses_per_s`` / ``ocsp_p99_ms``: OCSP for a mix of good and revoked serials
  (``bench/ca_ocsp.py``);
- ``crl_1m_generate_s``: a CRL of 1,000,000 revoked certificates, read, built, linted, signed through
  the signer and stored (``bench/ca_crl.py``).

    .venv/bin/python -m bench.ca [--quick] [--only enroll,ocsp,crl] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, bench_stack
from bench.report import publish
from tsunagu.devstack.stack import RunningStack


@dataclass
class CaBench:
    """What every part gets: the running stack, the run's scale and a place for notes."""

    stack: RunningStack
    quick: bool
    notes: list[str] = field(default_factory=list)

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.stack.config.postgres_url else "SQLite"

    @property
    def credentials(self) -> Path:
        return self.stack.config.state_dir / "credentials"


Part = Callable[[CaBench], Awaitable[dict[str, dict[str, Any]]]]


def _parts() -> dict[str, Part]:
    from bench import ca_crl, ca_enroll, ca_ocsp

    return {"enroll": ca_enroll.measure, "ocsp": ca_ocsp.measure, "crl": ca_crl.measure}


def run(
    quick: bool, only: list[str], state_dir: Path, sqlite: bool = False
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    # Production runs the services on PostgreSQL; one database per service, dropped afterwards.
    metrics: dict[str, dict[str, Any]] = {}
    with bench_stack(state_dir, sqlite=sqlite) as stack:
        context = CaBench(stack, quick)
        for name, part in _parts().items():
            if name in only:
                started = time.monotonic()
                metrics.update(asyncio.run(part(context)))
                context.notes.append(f"{name}: {time.monotonic() - started:.0f} s")
    return metrics, context.notes


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    parser.add_argument("--only", default="enroll,ocsp,crl", help="comma-separated parts")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--sqlite", action="store_true", help="services on SQLite (default PostgreSQL)")
    args = parser.parse_args(argv)
    only = [part.strip() for part in args.only.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-ca-") as state:
        metrics, notes = run(args.quick, only, Path(state), sqlite=args.sqlite)
    path = args.output_dir / "ca.json"
    if set(only) != {"enroll", "ocsp", "crl"} and path.exists():  # keep the other parts' figures
        previous = json.loads(path.read_text())
        metrics = {**previous.get("metrics", {}), **metrics}
        notes = [n for n in previous.get("notes", []) if n.split(":")[0] not in only] + notes
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    notes.append(f"load average at the end {load}")
    publish("ca", metrics, notes, args.output_dir)


if __name__ == "__main__":
    main()
