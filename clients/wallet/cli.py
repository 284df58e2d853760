"""``tsunagu wallet …`` — the reference citizen wallet on the command line.

Each device is a PKCS#11 token (SoftHSM2 stands in for the phone's secure element); the wallet's
home (``--home``, ``TSUNAGU_WALLET_HOME``, default ``~/.tsunagu-wallet``) keeps only certificates,
device ids and the platform's URLs. Output is Japanese by default (``--lang en`` or ``LANG=en…``
for English), ``--json`` for scripts; errors exit non-zero (2 bad input, 3 token or PIN, 4 the
platform refused, 5 unreachable) and change nothing in the state file.

See ``clients/wallet/README.md`` for every command with examples.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from tsunagu.wallet.enroll import WalletError
from tsunagu.wallet.messages import language, text
from tsunagu.wallet.state import Services, StoredDevice, WalletHome, WalletState

EXIT_INPUT = 2
EXIT_TOKEN = 3
EXIT_REFUSED = 4
EXIT_UNREACHABLE = 5
HTTP_TIMEOUT_S = 30.0


class CliError(Exception):
    """A failure the citizen should read: a message key, its parameters and the exit code."""

    def __init__(
        self, key: str, exit_code: int = EXIT_INPUT, *, code: str | None = None, **params: Any
    ) -> None:
        super().__init__(key)
        self.key = key
        self.exit_code = exit_code
        self.code = code or key.removeprefix("error.").replace("_", "-")
        self.params = params
        self.problem: dict[str, Any] | None = None


@dataclass
class Result:
    """A command's answer: ``data`` for ``--json``, ``lines`` for people."""

    data: dict[str, Any]
    lines: list[str] = field(default_factory=list)


@dataclass
class Context:
    args: argparse.Namespace
    home: WalletHome
    lang: str
    token_label: str = ""  # the token being used, for error messages

    def t(self, key: str, **params: Any) -> str:
        return text(self.lang, key, **params)

    def progress(self, step: str) -> None:
        print(self.t(f"progress.{step}"), file=sys.stderr, flush=True)  # noqa: T201 - CLI progress

    def load(self) -> WalletState:
        try:
            return self.home.load()
        except (ValidationError, ValueError) as exc:
            raise CliError("error.state_corrupt", path=str(self.home.state_path)) from exc

    def enrolled_state(self) -> tuple[WalletState, Services, str]:
        state = self.load()
        if state.user_number is None or state.services is None or not state.devices:
            raise CliError("error.not_enrolled")
        return state, state.services, state.user_number

    def pin(self) -> str:
        pin = self.args.pin or os.environ.get("TSUNAGU_WALLET_PIN")
        if pin:
            return str(pin)
        if sys.stdin.isatty():
            return getpass.getpass("PIN: ")
        raise CliError("error.pin_required")

    def device(self, state: WalletState, name: str | None = None) -> StoredDevice:
        """The named device, else ``--device``, else the default one; it must be active."""
        wanted = name or self.args.device or state.default_device
        device = state.devices.get(wanted or "")
        if device is None:
            raise CliError("error.unknown_device", device=wanted)
        if device.status != "active":
            raise CliError("error.device_lost", device=device.name)
        return device


def http(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT_S)


Handler = Callable[[Context], Coroutine[Any, Any, Result]]


def global_options(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """Options every command takes, before or after its name (a subcommand's copy leaves values
    given before the name alone: ``SUPPRESS`` defaults)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--home", default=default(os.environ.get("TSUNAGU_WALLET_HOME")), help="wallet directory"
    )
    parser.add_argument("--device", default=default(None), help="device to use (default: the default device)")
    parser.add_argument(
        "--pin", default=default(None), help="token PIN (else TSUNAGU_WALLET_PIN, else a prompt)"
    )
    parser.add_argument("--lang", choices=["ja", "en"], default=default(None), help="ja (default) or en")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def build_parser(prog: str = "tsunagu wallet") -> argparse.ArgumentParser:
    """The ``wallet`` command tree (also mounted under ``tsunagu`` by the developer CLI)."""
    from tsunagu.wallet import commands

    parser = argparse.ArgumentParser(prog=prog, description="Tsunagu reference citizen wallet")
    global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    return parser


def _print_error(context: Context, failure: CliError) -> None:
    message = context.t(failure.key, **failure.params)
    if context.args.json:
        error: dict[str, Any] = {"code": failure.code, "message": message}
        if failure.problem is not None:
            error["problem"] = failure.problem
        print(json.dumps({"ok": False, "error": error}, ensure_ascii=False))  # noqa: T201
    print(f"{context.t('error')}: {message}", file=sys.stderr)  # noqa: T201


def _translate(exc: BaseException, token: str) -> CliError | None:
    """Map token, platform and network failures onto messages; None for anything else."""
    from tsunagu.pkcs11 import (
        KeyNotFound,
        PinIncorrect,
        Pkcs11ModuleNotFound,
        TokenNotFound,
        TokenUnavailable,
    )

    failure: CliError | None = None
    if isinstance(exc, PinIncorrect):
        failure = CliError("error.pin_incorrect", EXIT_TOKEN, token=token)
    elif isinstance(exc, TokenNotFound):
        failure = CliError("error.token_not_found", EXIT_TOKEN, token=token)
    elif isinstance(exc, KeyNotFound):
        failure = CliError("error.key_missing", EXIT_TOKEN, token=token)
    elif isinstance(exc, TokenUnavailable):
        failure = CliError("error.token_unavailable", EXIT_TOKEN, token=token)
    elif isinstance(exc, Pkcs11ModuleNotFound):
        failure = CliError("error.module_not_found", EXIT_TOKEN, module=str(exc))
    elif isinstance(exc, WalletError):
        title = exc.problem.get("title") or exc.problem.get("type", "")
        failure = CliError(
            "error.refused",
            EXIT_REFUSED,
            code=str(exc.problem.get("type", "refused")).removeprefix("urn:tsunagu:problem:"),
            step=exc.step,
            status=exc.status,
            title=title,
        )
        failure.problem = exc.problem
    elif isinstance(exc, httpx.HTTPStatusError):  # e.g. the card service does not know the card
        failure = CliError(
            "error.http",
            EXIT_REFUSED,
            code="http-error",
            url=str(exc.request.url),
            status=exc.response.status_code,
        )
    elif isinstance(exc, httpx.TransportError):
        failure = CliError("error.unreachable", EXIT_UNREACHABLE, url=str(exc.request.url))
    return failure


def main(argv: list[str] | None = None, *, prog: str = "tsunagu wallet") -> int:
    # The PKCS#11 layer logs for services; a citizen's terminal gets the messages below instead.
    logging.getLogger("tsunagu").setLevel(logging.CRITICAL)
    args = build_parser(prog).parse_args(argv)
    home = Path(args.home) if args.home else Path.home() / ".tsunagu-wallet"
    context = Context(args, WalletHome(home), language(args.lang))
    handler: Handler = args.handler
    try:
        result = asyncio.run(handler(context))
    except CliError as failure:
        _print_error(context, failure)
        return failure.exit_code
    except Exception as exc:
        translated = _translate(exc, context.token_label)
        if translated is None:
            raise
        _print_error(context, translated)
        return translated.exit_code
    if args.json:
        print(json.dumps({"ok": True, **result.data}, ensure_ascii=False, indent=2))  # noqa: T201
    else:
        for line in result.lines:
            print(line)  # noqa: T201
    return 0


if __name__ == "__main__":  # through the package, so its exception classes are the ones raised
    from tsunagu.wallet.cli import main as wallet_main

    sys.exit(wallet_main())
