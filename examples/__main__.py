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
                access_log=False,
            )
        )
        for config in configs
    ]
    await asyncio.gather(*(server.serve() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples", description=__doc__)
    parser.add_argument("configs", nargs="+", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve([RpConfig.load(path) for path in args.configs]))


if __name__ == "__main__":
    main()
