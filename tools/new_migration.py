"""Developer tool: autogenerate a service's next migration from its models.

    .venv/bin/python tools/new_migration.py idp "clients, sessions, grants"

Applies the existing revisions to a scratch SQLite database, then lets alembic write the
difference into ``services/<service>/migrations/versions``. Review the file before committing.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
from pathlib import Path

from tsunagu.service import ServiceSpec
from tsunagu.service.app import migration_runner


async def main(service: str, message: str) -> None:
    package = service.replace("-", "_")
    app_module = importlib.import_module(f"tsunagu.{package}.app")
    settings_module = importlib.import_module(f"tsunagu.{package}.settings")
    settings_cls = next(
        v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings"
    )
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'scratch.db'}"
        spec: ServiceSpec = app_module.service_spec(settings_cls(database_url=url))
        runner = migration_runner(spec, url)
        await runner.upgrade()
        await runner.revision(message, spec.migrations_dir)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
