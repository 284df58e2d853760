"""Outside opinions for the sandbox tests: the openssl CLI, at the tests' fixed instant."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.sandbox.conftest import NOW

ATTIME = str(int(NOW.timestamp()))


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the openssl CLI, capturing its text output (never raises on failure)."""
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)


def write_pem(path: Path, *certificates: x509.Certificate | str | bytes) -> Path:
    """Write certificates (objects or PEM) into one PEM file."""
    blobs = []
    for item in certificates:
        if isinstance(item, x509.Certificate):
            blobs.append(item.public_bytes(serialization.Encoding.PEM))
        else:
            blobs.append(item.encode() if isinstance(item, str) else item)
    path.write_bytes(b"".join(blobs))
    return path


def load(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def seconds_since_now() -> str:
    """Leeway for ``openssl ocsp``, which checks thisUpdate/nextUpdate against the wall clock
    whatever ``-attime`` says."""
    return str(int(abs(time.time() - NOW.timestamp())) + 3 * 86400)


def pkilint(tool: str, path: Path, *options: str) -> tuple[int, str]:
    """Run a pkilint command in process: (findings at WARNING or worse, report)."""
    module = importlib.import_module(f"pkilint.bin.{tool}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        count = module.main(["lint", *options, "-s", "WARNING", str(path)])
    return int(count), out.getvalue()
