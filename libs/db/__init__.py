"""Async SQLAlchemy engines and sessions (PostgreSQL/asyncpg, SQLite/aiosqlite) and per-service alembic."""

from tsunagu.db.engine import Database, as_utc, call_after_commit, create_engine, is_sqlite
from tsunagu.db.metadata import new_metadata
from tsunagu.db.migrations import MigrationRunner

__all__ = [
    "Database",
    "MigrationRunner",
    "as_utc",
    "call_after_commit",
    "create_engine",
    "is_sqlite",
    "new_metadata",
]
