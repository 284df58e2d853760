"""``tsunagu`` — developer commands.

tsunagu dev up [--demo] [--fast] [--postgres URL] [--state-dir DIR] [--no-apps]
tsunagu demo [--state-dir DIR]        # the demo story against a stack that is already up
tsunagu wallet …                      # the reference citizen wallet (tsunagu.wallet.cli)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import select
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tsunagu.devstack.demo import run_demo
from tsunagu.devstack.jlis_cli import add_jlis_commands, run_jlis_command
from tsunagu.devstack.stack import RunningStack, StackConfig, start_stack


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - a CLI talks on stdout


class DemoStopped(Exception):
    """Ctrl-C while the story waited for Enter."""


CHAPTER = re.compile(r"^\d+\. ")


def _narrator(stop: threading.Event, interactive: bool) -> Callable[[str], None]:
    """``say`` for the story: on a terminal, it waits for Enter before each numbered chapter (after
    the first), so a newcomer can read what each party saw; ``--fast`` and pipes never wait."""
    started = False

    def say(message: str) -> None:
        nonlocal started
        if interactive and CHAPTER.match(message):
            if started:
                _say("   ⏎ Enter で次へ / press Enter to continue")
                while not stop.is_set():
                    if select.select([sys.stdin], [], [], 0.5)[0]:
                        sys.stdin.readline()
                        break
                else:
                    raise DemoStopped
            started = True
        _say(message)

    return say


def _where_to_look(stack: RunningStack) -> None:
    """The pages a newcomer can open while the platform keeps running."""
    _say("\nブラウザで開く / open in a browser:")
    _say(f"  citizen dashboard  {stack.dashboard_url}   (同意の管理 / consent, exchange log)")
    for name, url in stack.apps.items():
        _say(f"  {name:<18} {url}   (サンプルアプリ / sample app: ログイン → the idp's QR login page)")
    _say(
        "  approve a login with the wallet CLI (clients/wallet/README.md): tsunagu jlis card create …, "
        f"tsunagu wallet enroll --stack {stack.config.state_dir} …, tsunagu wallet login approve '<app link>'"
    )


def _up(args: argparse.Namespace) -> int:
    config = StackConfig(
        state_dir=Path(args.state_dir),
        jlis_port=args.jlis_port,
        kafka_port=args.kafka_port,
        base_port=args.base_port,
        postgres_url=args.postgres,
        log_level=args.log_level,
        apps_port=0 if args.no_apps else args.apps_port,
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    _say("Tsunagu を起動しています / starting Tsunagu…")
    try:
        stack = start_stack(config, progress=_say)
    except RuntimeError as failure:
        _say(f"起動できません / cannot start: {failure}")
        return 1
    try:
        _say("すべてのサービスが準備完了 / all services ready:")
        for name, url in stack.urls.items():
            _say(f"  {name:<10} {url}   ({url}/openapi.json)")
        _say(f"  dashboard  {stack.dashboard_url}   (市民の同意の管理 / the citizen's consent dashboard)")
        for name, url in stack.apps.items():
            _say(f"  {name:<14} {url}   (examples/)")
        _say(f"  logs       {config.state_dir / 'logs'}")
        ok = True
        fast = args.fast
        if args.demo or fast:
            _say("\nデモ / demo story:")
            say = _narrator(stop, interactive=not fast and sys.stdin.isatty())
            try:
                ok = asyncio.run(
                    run_demo(
                        stack.urls,
                        config.state_dir / "credentials",
                        say=say,
                        jlis_url=stack.jlis_url,
                        apps=stack.apps,
                        records_file=stack.records_file,
                    )
                )
            except DemoStopped:
                return 0
            _say("デモ完了 / the story ran to the end" if ok else "✗ デモ失敗 / the story failed")
        if fast:
            return 0 if ok else 1
        if stack.apps:
            _where_to_look(stack)
        _say("\nCtrl-C で停止 / press Ctrl-C to stop")
        while not stop.wait(0.5):
            dead = [name for name, process in stack.processes.items() if process.poll() is not None]
            if dead:
                _say(f"stopped unexpectedly: {', '.join(dead)} (see {config.state_dir / 'logs'})")
                return 1
        return 0 if ok else 1
    finally:
        _say("停止しています / stopping…")
        stack.stop()
        _say("停止しました / stopped")


def _demo(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    described = json.loads((state / "stack.json").read_text())
    ok = asyncio.run(
        run_demo(
            described["services"],
            state / "credentials",
            say=_say,
            jlis_url=described.get("jlis_sandbox", ""),
            apps=described.get("apps") or {},
            records_file=described.get("records_file", ""),
        )
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wallet"]:  # its own parser and options (tsunagu wallet --help)
        from tsunagu.wallet.cli import main as wallet_main

        return wallet_main(argv[1:])
    parser = argparse.ArgumentParser(prog="tsunagu", description="Tsunagu developer commands")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="the embedded development stack").add_subparsers(
        dest="action", required=True
    )
    up = dev.add_parser("up", help="start tansu, SoftHSM2 and every service; Ctrl-C stops all")
    up.add_argument("--state-dir", default=".tsunagu")
    up.add_argument("--postgres", default=None, help="PostgreSQL server URL (default: SQLite files)")
    up.add_argument("--kafka-port", type=int, default=19092)
    up.add_argument("--base-port", type=int, default=8101)
    up.add_argument("--jlis-port", type=int, default=8190, help="the J-LIS sandbox")
    up.add_argument("--log-level", default="INFO")
    up.add_argument("--apps-port", type=int, default=8120, help="the sample apps (examples/) from here on")
    up.add_argument("--no-apps", action="store_true", help="do not start the sample apps")
    up.add_argument("--demo", action="store_true", help="run the demo story once ready")
    up.add_argument(
        "--fast", action="store_true", help="run the demo without pausing, then stop everything (CI)"
    )
    up.set_defaults(handler=_up)
    demo = commands.add_parser("demo", help="run the demo story against the running stack")
    demo.add_argument("--state-dir", default=".tsunagu")
    demo.set_defaults(handler=_demo)
    add_jlis_commands(commands)
    commands.add_parser("wallet", help="the reference citizen wallet (tsunagu wallet --help)")
    args = parser.parse_args(argv)
    code: int = run_jlis_command(args) if args.command == "jlis" else args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
