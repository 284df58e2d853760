"""Tables owned by signer. Only store/ touches the database."""

from sqlalchemy import JSON, Column, DateTime, Index, Integer, LargeBinary, String, Table, text

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("key_size", Integer, nullable=True),
    Column("state", String(16), nullable=False),
    Column("hsm_label", String(64), nullable=False, unique=True),
    Column("public_key_der", LargeBinary, nullable=False),
    Column("allowed_callers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    Column("retired_at", DateTime(timezone=True), nullable=True),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
    # At most one active key per purpose and algorithm, enforced by the database too (ID tokens
    # need an ES256 and an RS256 key at once; the domain keeps CA, receipt and log purposes to
    # one active key whatever the algorithm).
    Index(
        "uq_signing_key_active_purpose_algorithm",
        "purpose",
        "algorithm",
        unique=True,
        postgresql_where=text("state = 'active'"),
        sqlite_where=text("state = 'active'"),
    ),
)
