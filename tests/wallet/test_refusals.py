"""Bad paths: wrong or missing PIN, a token that is not there, an unknown card, an unreachable
platform, someone else's card, a corrupt state file — each a clear error, a specific exit code,
the state file untouched and no key left behind in the token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.wallet.conftest import Wallet
from tsunagu.devstack.softhsm import write_config


def _enroll_args(wallet: Wallet, card: str, token: str = "phone-1") -> list[str]:
    return ["enroll", "--card", card, "--token", token, "--stack", str(wallet.stack.config.state_dir)]


async def test_pin_and_token_refusals_before_enrollment(wallet: Wallet, tmp_path: Path) -> None:
    card = await wallet.new_card()
    await wallet.fails(*_enroll_args(wallet, card), pin="wrong-pin", exit_code=3, code="pin-incorrect")
    await wallet.fails(*_enroll_args(wallet, card), pin="", exit_code=2, code="pin-required")
    await wallet.fails(*_enroll_args(wallet, card, "no-such-token"), exit_code=3, code="token-not-found")
    human = await wallet.run(*_enroll_args(wallet, card), pin="wrong-pin")
    assert human.code == 3 and "トークン phone-1 の PIN が違います" in human.stderr
    assert "wrong-pin" not in human.stderr + human.stdout
    assert wallet.state_bytes() is None and wallet.probe("phone-1") == []


async def test_failed_enrollment_leaves_no_keys_and_no_state(wallet: Wallet) -> None:
    await wallet.fails(*_enroll_args(wallet, "no-such-card"), exit_code=4, code="http-error")
    assert wallet.state_bytes() is None and wallet.probe("phone-1") == []
    unreachable = [
        "enroll", "--card", "x", "--token", "phone-1", "--ca", "http://127.0.0.1:9", "--idp", "http://127.0.0.1:9",
        "--jlis", "http://127.0.0.1:9",
    ]  # fmt: skip
    await wallet.fails(*unreachable, exit_code=5, code="unreachable")
    assert wallet.state_bytes() is None and wallet.probe("phone-1") == []
    await wallet.fails("login", "inbox", exit_code=2, code="not-enrolled")
    assert (await wallet.ok("devices"))["devices"] == []


async def test_refusals_after_enrollment_change_nothing(wallet: Wallet, tmp_path: Path) -> None:
    card = await wallet.new_card()
    await wallet.enroll("phone-1", card)
    keys_before = wallet.probe("phone-1")

    await wallet.fails("app-cert", "add", "clinic-app", pin="wrong-pin", exit_code=3, code="pin-incorrect")
    await wallet.fails(
        *_enroll_args(wallet, card, "phone-2"), device="phone-2", exit_code=2, code="already-enrolled"
    )
    await wallet.fails(
        "device",
        "add",
        "--card",
        card,
        "--token",
        "phone-1",
        "--name",
        "again",
        exit_code=2,
        code="token-in-use",
    )
    await wallet.fails("certs", "--device", "nope", exit_code=2, code="unknown-device")
    await wallet.fails("app-cert", "add", "clinic-app", device="nope", exit_code=2, code="unknown-device")
    assert wallet.probe("phone-1") == keys_before

    # The secure element is gone (another SoftHSM store, without this token): clear error.
    empty = write_config(tmp_path / "empty-store")
    error = await wallet.fails(
        "login", "inbox", SOFTHSM2_CONF=str(empty), exit_code=3, code="token-not-found"
    )
    assert "phone-1" in error["message"]

    # Someone else's card on the second token: refused, what the CA issued is revoked, no key kept.
    stranger = await wallet.new_card("他人 三郎")
    await wallet.fails(
        "device",
        "add",
        "--card",
        stranger,
        "--token",
        "phone-2",
        device="phone-2",
        exit_code=2,
        code="other-person",
    )
    assert wallet.probe("phone-2") == []

    # A damaged state file is reported, not overwritten.
    wallet.state_file.write_text("{not json")
    await wallet.fails("devices", exit_code=2, code="state-corrupt")
    assert wallet.state_file.read_text() == "{not json"


def test_the_tsunagu_command_mounts_the_wallet(tmp_path: Path) -> None:
    """``tsunagu wallet …`` (the developer CLI's entry point) is the same command tree."""
    command = [
        sys.executable,
        "-m",
        "tsunagu.devstack.cli",
        "wallet",
        "--home",
        str(tmp_path),
        "devices",
        "--json",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"ok": True, "user_number": None, "devices": []}
    usage = subprocess.run(
        [sys.executable, "-m", "tsunagu.devstack.cli", "wallet", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 0 and "login" in usage.stdout and "consent" in usage.stdout
