"""The wallet CLI on the real stack: signer, ca, idp, consent, jlis-sync, the J-LIS sandbox and
tansu run as processes (``tsunagu dev up``'s code, once per session). Each test gets a wallet home
and fresh SoftHSM2 tokens (the phones' secure elements) in a store of its own; the CLI runs as a
subprocess (``python -m tsunagu.wallet``) with that store's ``SOFTHSM2_CONF`` — a new process
per command, so every command finds its keys on the token again, as after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ca.conftest import started_stack
from tests.idp.conftest import service_auth
from tests.idp.rp import RelyingParty, register_rp
from tsunagu.devstack.softhsm import SoftHsmToken, find_softhsm_module, init_token
from tsunagu.devstack.stack import RunningStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def wallet_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with started_stack(tmp_path_factory) as stack:
        yield stack


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.stdout))


@dataclass
class Wallet:
    """One citizen's wallet: its home, its tokens (label → token) and the stack it talks to."""

    home: Path
    stack: RunningStack
    tokens: dict[str, SoftHsmToken]
    conf: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.home / "wallet.json"

    def state_bytes(self) -> bytes | None:
        return self.state_file.read_bytes() if self.state_file.exists() else None

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    async def run(self, *args: str, pin: str | None = None, device: str | None = None, **env: str) -> Run:
        label = device or next(iter(self.tokens))
        command = [sys.executable, "-m", "tsunagu.wallet", "--home", str(self.home)]
        if pin is not None or label in self.tokens:
            command += ["--pin", pin if pin is not None else self.tokens[label].user_pin]
        if device is not None:
            command += ["--device", device]
        environment = {
            **os.environ,
            "SOFTHSM2_CONF": str(self.conf),
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
            **self.extra_env,
            **env,
        }
        environment.pop("TSUNAGU_WALLET_PIN", None)
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            cwd=self.home.parent,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,  # no terminal: never a prompt
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return Run(process.returncode, stdout.decode(), stderr.decode())

    async def ok(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        """Run with ``--json``; assert success; the parsed answer."""
        result = await self.run(*args, "--json", **kwargs)
        assert result.code == 0, (result.code, result.stdout, result.stderr)
        answer = result.json
        assert answer["ok"] is True
        return answer

    async def fails(self, *args: str, exit_code: int, code: str, **kwargs: Any) -> dict[str, Any]:
        """Run with ``--json``; assert the exit code and the error code; nothing written."""
        before = self.state_bytes()
        result = await self.run(*args, "--json", **kwargs)
        assert result.code == exit_code, (result.code, result.stdout, result.stderr)
        error = result.json["error"]
        assert error["code"] == code, error
        assert "Traceback" not in result.stderr, result.stderr
        assert self.state_bytes() == before, "the state file changed on a failed command"
        return dict(error)

    def probe(self, label: str) -> list[dict[str, Any]]:
        """The token's private keys as python-pkcs11 sees them (another process)."""
        import subprocess

        token = self.tokens[label]
        completed = subprocess.run(
            [sys.executable, "-m", "tests.wallet.token_probe", token.module_path, label, token.user_pin],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return list(json.loads(completed.stdout))

    async def new_card(self, name: str = "財布 花子") -> str:
        async with httpx.AsyncClient(base_url=self.stack.jlis_url, timeout=30) as jlis:
            response = await jlis.post(
                "/cards",
                json={
                    "name": name,
                    "address": "北海道江別市高砂町6番地",
                    "birth_date": "1988-08-08",
                    "sex": "2",
                },
            )
            response.raise_for_status()
            return str(response.json()["card_id"])

    async def enroll(self, label: str = "phone-1", card: str | None = None) -> dict[str, Any]:
        card = card or await self.new_card()
        return await self.ok(
            "enroll",
            "--card",
            card,
            "--token",
            label,
            "--stack",
            str(self.stack.config.state_dir),
            pin=self.tokens[label].user_pin,
        )


@pytest.fixture
def wallet(wallet_platform: RunningStack, tmp_path: Path) -> Wallet:
    module = find_softhsm_module()
    store = tmp_path / "secure-elements"
    tokens = {
        label: init_token(store, label, user_pin=secrets.token_hex(4), so_pin=secrets.token_hex(8))
        for label in ("phone-1", "phone-2")
    }
    assert all(token.module_path == module for token in tokens.values())
    return Wallet(tmp_path / "home", wallet_platform, tokens, store / "softhsm2.conf")


@pytest.fixture
async def idp_admin(wallet_platform: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wallet_platform.urls["idp"], timeout=30) as client:
        yield client


async def relying_party(stack: RunningStack, admin: httpx.AsyncClient, **metadata: Any) -> RelyingParty:
    return await register_rp(admin, service_auth(stack, "operator", "idp"), **metadata)
