"""Outside opinions on what tsunagu.x509 produces: the openssl CLI and pkilint (when installed)."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import time
from pathlib import Path

from tests.libs.x509_factories import NOW

# openssl verifies chains at the fixtures' fixed time, not the wall clock
ATTIME = str(int(NOW.timestamp()))


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the openssl CLI, capturing its text output (never raises on failure)."""
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)


def seconds_since_now() -> str:
    """Leeway for ``openssl ocsp``, which checks thisUpdate/nextUpdate against the wall clock."""
    return str(int(abs(time.time() - NOW.timestamp())) + 3 * 86400)


def pkilint(tool: str, path: Path, *options: str) -> tuple[int, str]:
    """Run a pkilint command in process; return (findings at ERROR or worse, report).

    pkilint is a dev dependency (pyproject.toml): a missing install fails the test.
    """
    module = importlib.import_module(f"pkilint.bin.{tool}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        count = module.main(["lint", *options, "-s", "ERROR", str(path)])
    return int(count), out.getvalue()
