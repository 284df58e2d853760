"""`tsunagu dev up` really starts the platform and the sample apps (examples/) as separate processes,
runs the demo story, and stops clean."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.infra import PG_ADMIN_DSN
from tsunagu.devstack.ports import free_port, free_port_block, free_port_outside, port_is_free
from tsunagu.devstack.postgres import drop_database

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 27  # the services from the base port on, the records system and sample apps from base + 20
APPS_OFFSET = 20


def _tsunagu(*args: str) -> list[str]:
    return [sys.executable, "-m", "tsunagu.devstack.cli", *args]


def _dev_up(state_dir: Path, base: int, kafka: int, *extra: str) -> list[str]:
    """``tsunagu dev up`` on the given ports, the J-LIS sandbox on a free one."""
    return _tsunagu(
        "dev",
        "up",
        "--state-dir",
        str(state_dir),
        "--base-port",
        str(base),
        "--kafka-port",
        str(kafka),
        "--jlis-port",
        str(free_port_outside(base, kafka, block_size=BLOCK)),
        "--apps-port",
        str(base + APPS_OFFSET),
        *extra,
    )


def _all_free(base: int) -> bool:
    ports = [*range(base, base + 6), *range(base + APPS_OFFSET, base + BLOCK)]
    return all(port_is_free(port) for port in ports)


def test_dev_up_runs_the_demo_on_sqlite_and_leaves_nothing_running(tmp_path: Path):
    base = free_port_block(BLOCK)
    kafka = free_port_outside(base, block_size=BLOCK)
    result = subprocess.run(
        _dev_up(tmp_path, base, kafka, "--fast"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    consent_port = base + 3
    assert f"dashboard  http://127.0.0.1:{consent_port}/dashboard" in result.stdout
    for service in ("signer", "idp", "consent", "broker", "jlis-sync"):
        assert f"✓ {service}" in result.stdout
    assert "ca issued a root certificate through the signer" in result.stdout
    assert "idp may not use the CA key (403 urn:tsunagu:problem:key-not-allowed)" in result.stdout
    assert "idp reads the new address over authenticated HTTP: 北海道江別市高砂町6番地" in result.stdout
    out = result.stdout
    assert "sample relying parties ready: e-diary, e-life-trainer, ebetsu-market, hospital-a" in out
    assert "two phones enroll" in out and "on both (same)" in out
    assert "19. e-ライフトレーナーにログイン" in out and "'systolic': 128" in out
    assert "pairwise, never the user number" in out
    assert "A病院 sees {'health.allergy': {'allergens': ['そば', 'ペニシリン']" in out
    assert "B病院 → HTTP 403 consent-required (its grant: refused ['health.allergy'])" in out
    assert (
        "the bank's webhook (signed)" in out
        and "{'address': '北海道江別市野幌町10番地'}; the market: 0 notices" in out
    )
    assert "A refused (403 consent-required)" in out
    assert "23. やりとり履歴" in out and "push 北海道みらい銀行 ['resident.address'] → completed" in out
    assert "デモ完了 / the story ran to the end" in out
    assert "停止しました / stopped" in out
    assert _all_free(base) and port_is_free(kafka)
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.suffix == ".db") == sorted(
        f"{s}.db" for s in ("signer", "ca", "idp", "consent", "broker", "jlis-sync")
    )
    assert not (tmp_path / "stack.json").exists()


@pytest.fixture
async def postgres_prefix():
    prefix = f"tsunagu_e2e_{uuid.uuid4().hex[:8]}"
    yield prefix
    for service in ("signer", "ca", "idp", "consent", "broker", "jlis_sync"):
        await drop_database(f"{prefix}_{service}")


async def test_dev_up_on_postgresql_serves_until_ctrl_c_then_stops_everything(
    tmp_path: Path, postgres_prefix: str
):
    base = free_port_block(BLOCK)
    kafka = free_port_outside(base, block_size=BLOCK)
    server = PG_ADMIN_DSN.rsplit("/", 1)[0]
    stack = subprocess.Popen(
        _dev_up(tmp_path, base, kafka, "--postgres", f"{server}/{postgres_prefix}"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        lines = []
        assert stack.stdout is not None
        for line in stack.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert any("all services ready" in line for line in lines), "".join(lines)
        assert any("ブラウザで開く / open in a browser" in line for line in lines), "".join(lines)
        hospital_a = f"http://127.0.0.1:{base + APPS_OFFSET + 4}"
        assert any(line.split() == ["hospital-a", hospital_a, "(examples/)"] for line in lines)
        demo = subprocess.run(
            _tsunagu("demo", "--state-dir", str(tmp_path)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "デモ完了" not in demo.stdout  # `tsunagu demo` prints the chapters only
        assert "23. やりとり履歴" in demo.stdout
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            databases = {r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")}
        finally:
            await admin.close()
        assert f"{postgres_prefix}_consent" in databases and f"{postgres_prefix}_jlis_sync" in databases
    finally:
        stack.send_signal(signal.SIGINT)
        rest, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, rest
    assert "停止しました / stopped" in rest
    assert _all_free(base) and port_is_free(kafka)


@pytest.mark.parametrize(("offset", "name"), [(1, "ca"), (APPS_OFFSET + 4, "hospital-a")])
def test_dev_up_refuses_a_busy_port_instead_of_talking_to_a_stranger(tmp_path: Path, offset: int, name: str):
    base = free_port_block(BLOCK)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + offset))
        squatter.listen()
        result = subprocess.run(
            _dev_up(tmp_path, base, free_port(), "--fast"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"ports in use: {name} {base + offset}" in result.stdout
    assert not (tmp_path / "stack.json").exists()
