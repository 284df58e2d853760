"""``tsunagu jlis …`` against the sandbox served by uvicorn on a loopback socket."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tsunagu.devstack.jlis_cli import add_jlis_commands, run_jlis_command
from tsunagu.sandbox.jlis import JlisSandbox, create_app


@pytest.fixture
def client(jlis: JlisSandbox) -> Iterator[str]:
    """The sandbox's URL: uvicorn in a thread on a socket bound here (no port race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(None, sandbox=jlis), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def _run(url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu")
    add_jlis_commands(parser.add_subparsers(dest="command", required=True))
    return run_jlis_command(parser.parse_args(["jlis", *argv, "--url", url]))


def test_card_create_sign_move_die_and_crl_publish(
    client: str, jlis: JlisSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create = [
        "card",
        "create",
        "--name",
        "山田 太郎",
        "--address",
        "東京都",
        "--birth-date",
        "1990-04-01",
        "--sex",
        "1",
    ]
    assert _run(client, *create, "--json") == 0
    card = json.loads(capsys.readouterr().out)
    assert card["signing_serial"] in jlis.store.state.certificates

    data = tmp_path / "challenge.bin"
    data.write_bytes(b"\x00\x01challenge")
    assert _run(client, "card", "sign", card["card_id"], "--data-file", str(data)) == 0
    out = capsys.readouterr().out
    assert "署名 / signature" in out and card["signing_serial"] in out

    assert _run(client, "move", card["person_id"], "--address", "大阪府") == 0
    out = capsys.readouterr().out
    assert "転居 / move" in out and f"失効 / revoked    {card['signing_serial']}" in out

    assert _run(client, "die", card["person_id"]) == 0
    assert "死亡 / death" in capsys.readouterr().out
    assert _run(client, "die", card["person_id"]) == 1
    assert "エラー / error 409" in capsys.readouterr().out

    assert _run(client, "crl", "publish") == 0
    assert "signing CRL number 1" in capsys.readouterr().out
    assert _run(client, "card", "show", card["card_id"]) == 0
    assert "deceased" in capsys.readouterr().out


def test_unreachable_sandbox_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tsunagu")
    add_jlis_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["jlis", "crl", "publish", "--url", "http://127.0.0.1:9"])
    assert run_jlis_command(args) == 2
    assert "cannot reach the sandbox" in capsys.readouterr().out
