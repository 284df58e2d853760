"""Tables owned by jlis-sync. Only store/ touches the database."""

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, String, Table, Text

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

# JPKI signing certificates linked to platform users (fed by ca at enrollment, extended by moves).
jpki_link = Table(
    "jpki_link",
    metadata,
    Column("serial", String(64), primary_key=True),  # lower-case hex, issuer = the J-LIS signing CA
    Column("user_number", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # current | superseded | revoked
    Column("superseded_by", String(64), nullable=True),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Index("ix_jpki_link_user_number", "user_number"),
)

# Per person: the citizen's consent to the latest-basic-4 service and the last known values.
resident = Table(
    "resident",
    metadata,
    Column("user_number", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("sex", String(1), nullable=False),
    Column("basic4_consent", Text, nullable=True),  # compact JWS signed with the card, or none
    Column("deceased_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every revocation we acted on, whichever channel told us first (push or CRL): acted on once.
revocation_seen = Table(
    "revocation_seen",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("source", String(8), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

# The last CRL applied (per CRL URL), so a crash resumes and an older CRL is refused.
crl_checkpoint = Table(
    "crl_checkpoint",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("etag", String(255), nullable=True),
    Column("last_modified", String(64), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# Push notifications received (replay protection and idempotency by J-LIS's notification id).
push_receipt = Table(
    "push_receipt",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
