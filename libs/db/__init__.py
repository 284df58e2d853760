"""Async SQLAlchemy engines and sessions (PostgreSQL/asyncpg, SQLite/aiosqlite) and per-service alembic."""

from tsunagu.db.engine import Database, call_after_commit, create_engine, is_sqlite
from tsunagu.db.metadata import new_metadata
from tsunagu.db.migrations import MigrationRunner

__all__ = ["Database", "MigrationRunner", "call_after_commit", "create_engine", "is_sqlite", "new_metadata"]
