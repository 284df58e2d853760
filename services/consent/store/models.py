"""Tables owned by consent. Only store/ touches the database.

``decision`` is the evidence: the signed statement exactly as received (the compact JWS), the
CA's answer about the certificate, the platform's receipt. It is append-only — no code path
updates or deletes a row; a withdrawal or change is a new row that ``supersedes`` an older one.
``decision_item`` is the index the effective-consent queries read (one row per allowed or denied
item of a ``decide``), derived from the statement in the same transaction and never changed either.
Personal data: none beyond the user identification number (no names, no data item values).
"""

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

# Who may receive data: a relying party or platform service (its client id / service name).
recipient = Table(
    "recipient",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name_ja", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("registered_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A recipient's request for a person's consent (what the wallet shows).
consent_request = Table(
    "consent_request",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_number", String(16), nullable=False),
    Column("recipient_id", String(64), ForeignKey("recipient.id"), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("purpose_ja", Text, nullable=False),
    Column("purpose_en", Text, nullable=False),
    Column("purpose_dpv", String(100), nullable=True),
    Column("items", JSON, nullable=False),  # [{"item": id, "required": bool}]
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("limits", JSON, nullable=True),
    # The notice the wallet shows (recipient, purpose, items, validity, limits, version) as a JSON
    # document; its RFC 8785 SHA-256 is what the citizen's statement must name.
    Column("notice", JSON, nullable=False),
    Column("notice_version", String(32), nullable=False),
    Column("notice_sha256", String(64), nullable=False),
    Column("state", String(12), nullable=False),  # pending | answered
    Column("decision_id", String(32), nullable=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("answer_by", DateTime(timezone=True), nullable=False),
    Index("ix_consent_request_pending", "user_number", "state"),
)

decision = Table(
    "decision",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_number", String(16), nullable=False),
    # The receipt's sequence number: 1, 2, 3 … per citizen, gapless (unique below).
    Column("sequence", Integer, nullable=False),
    Column("recipient_id", String(64), ForeignKey("recipient.id"), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("action", String(12), nullable=False),  # decide | withdraw
    Column("request_id", String(32), nullable=True),
    Column("supersedes", String(32), nullable=True, index=True),
    # The per-citizen, per-recipient hash chain: previous decision's SHA-256, or "genesis".
    Column("previous_sha256", String(64), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("decision_sha256", String(64), nullable=False, unique=True),
    Column("jws", Text, nullable=False),  # the signed statement, byte for byte as received
    Column("certificate_serial", String(40), nullable=False),
    Column("ca_evidence", JSON, nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("receipt", Text, nullable=False),  # compact JWS by the signer's receipt key
    Column("receipt_kid", String(64), nullable=False),
    UniqueConstraint("user_number", "sequence"),
    UniqueConstraint("user_number", "nonce"),
    UniqueConstraint("user_number", "recipient_id", "previous_sha256"),
    Index("ix_decision_history", "user_number", "recipient_id", "sequence"),
)

decision_item = Table(
    "decision_item",
    metadata,
    Column("decision_id", String(32), ForeignKey("decision.id"), primary_key=True),
    Column("item", String(64), primary_key=True),
    Column("value", String(5), nullable=False),  # allow | deny
    Column("user_number", String(16), nullable=False),
    Column("recipient_id", String(64), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Index("ix_decision_item_lookup", "user_number", "recipient_id", "purpose_code", "item"),
)

# jti of the wallet's signed queries already seen, remembered until they could not be fresh anyway.
seen_jti = Table(
    "seen_jti",
    metadata,
    Column("issuer", String(40), primary_key=True),  # certificate serial
    Column("jti", String(128), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# The citizen dashboard's browser sessions. The cookie carries a random id; only its SHA-256 is
# kept. A row starts as a login in progress (state, nonce, PKCE verifier) and becomes a session
# of one person (user_number from the idp's ID token, a CSRF token) under a new id.
dashboard_session = Table(
    "dashboard_session",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_number", String(16), nullable=True),
    Column("oidc_state", String(64), nullable=True),
    Column("oidc_nonce", String(64), nullable=True),
    Column("code_verifier", String(128), nullable=True),
    Column("csrf_token", String(64), nullable=True),
    Column("locale", String(2), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# What the citizen asked the dashboard to change (the request's proposed answer per item), shown
# beside the signing QR code; the wallet's signed decision is what counts.
dashboard_change = Table(
    "dashboard_change",
    metadata,
    Column("request_id", String(32), ForeignKey("consent_request.id"), primary_key=True),
    Column("user_number", String(16), nullable=False),
    Column("proposal", JSON, nullable=False),  # {item: "allow" | "deny"}
    Column("created_at", DateTime(timezone=True), nullable=False),
)
