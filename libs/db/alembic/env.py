"""Shared alembic environment: the runner passes the connection and the service's metadata."""

from tsunagu.db.migrations import run_env

run_env()
