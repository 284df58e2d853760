"""Scratch PostgreSQL databases for the dev stack, tests and benchmarks (never for production)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

# The maintenance database of the local server (trust auth on loopback in dev and CI).
ADMIN_DSN = os.environ.get("TSUNAGU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_url(name: str, admin_dsn: str = ADMIN_DSN) -> str:
    """The SQLAlchemy (asyncpg) URL of database ``name`` on the admin DSN's server."""
    return admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


def _checked(name: str) -> str:
    # Names are interpolated into DDL (no bind parameters there): allow only plain identifiers.
    if not _SAFE_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


async def create_database(name: str, admin_dsn: str = ADMIN_DSN, *, exist_ok: bool = False) -> str:
    """Create database ``name`` and return its URL."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not (exists and exist_ok):
            await connection.execute(f'CREATE DATABASE "{_checked(name)}"')
    finally:
        await connection.close()
    return database_url(name, admin_dsn)


async def drop_database(name: str, admin_dsn: str = ADMIN_DSN) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def scratch_database(prefix: str = "tsunagu_tmp", admin_dsn: str = ADMIN_DSN) -> AsyncIterator[str]:
    """A fresh database for the duration of the block (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = await create_database(name, admin_dsn)
    try:
        yield url
    finally:
        await drop_database(name, admin_dsn)
