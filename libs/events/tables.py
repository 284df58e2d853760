"""The outbox and inbox tables, added to each service's own metadata (and its migrations)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    text,
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants a bigint identity.
SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class EventTables:
    outbox: Table
    inbox: Table


def define_event_tables(metadata: MetaData) -> EventTables:
    """Add ``event_outbox`` and ``event_inbox`` to ``metadata`` and return them."""
    outbox = Table(
        "event_outbox",
        metadata,
        Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(249), nullable=False),
        Column("partition_key", String(255), nullable=True),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index(
            "ix_event_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index("ix_event_outbox_published_at", "published_at"),
    )
    inbox = Table(
        "event_inbox",
        metadata,
        Column("consumer", String(128), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("topic", String(249), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("status", String(16), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )
    return EventTables(outbox=outbox, inbox=inbox)
