"""Serve sample relying parties: ``python -m examples CONFIG.json [CONFIG.json …]`` — one process,
one port per app (each config names its app and port; see examples/kit/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
from pathlib import Path

import uvicorn

from examples.kit.app import Example, create_app
from examples.kit.config import RpConfig

APPS = ("e_diary", "e_life_trainer", "ebetsu_market", "hospital", "bank")


def example(app: str) -> Example:
    if app not in APPS:
        raise SystemExit(f"unknown app {app!r} (one of {', '.join(APPS)})")
    found: Example = importlib.import_module(f"examples.{app}").EXAMPLE
    return found


async def serve(configs: list[RpConfig]) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                create_app(example(config.app), config),
                host="127.0.0.1",
                port=config.port,
                log_level="warning",
                log_config=None,  # logging is configured once, in main()
                access_log=False,
            )
        )
        for config in configs
    ]
    running = {asyncio.create_task(server.serve()): server for server in servers}
    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    if any(not running[task].started for task in done):  # an app could not start: stop them all
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*running, return_exceptions=True)
        raise SystemExit(1)
    await asyncio.gather(*running)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples", description=__doc__)
    parser.add_argument("configs", nargs="+", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call: noise
    asyncio.run(serve([RpConfig.load(path) for path in args.configs]))


if __name__ == "__main__":
    main()
