"""Tables owned by ca. Only store/ touches the database.

Personal data: none. The JPKI certificate kept as identity-proofing evidence carries the basic 4
information; it is stored (the law requires the evidence) but never logged, never put in an event
and never returned by the API.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

# The CA's own certificates: the root, issuing CAs (several after rollovers) and their delegated
# OCSP responders. The keys live in the signer; key_id names them there.
authority = Table(
    "authority",
    metadata,
    Column("id", String(32), primary_key=True),  # root-1, issuing-1, ocsp-1 …
    Column("kind", String(8), nullable=False),  # root | issuing | ocsp
    Column("parent_id", String(32), ForeignKey("authority.id"), nullable=True),
    Column("key_id", String(64), nullable=False),
    Column("algorithm", String(8), nullable=False),  # ES256 | RS256 | PS256
    Column("certificate_der", LargeBinary, nullable=False),
    Column("state", String(8), nullable=False),  # current (issues) | active (CRL/OCSP only) | retired
    # Bumped in every transaction that revokes a certificate of this issuer; a CRL records the
    # value it covered, so "publish on change" is a comparison.
    Column("revocation_count", BigInteger, nullable=False, default=0),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

person = Table(
    "person",
    metadata,
    Column("user_number", String(16), primary_key=True),
    Column("state", String(12), nullable=False),  # active | deceased
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deceased_at", DateTime(timezone=True), nullable=True),
)

# A JPKI signing certificate (J-LIS serial) proven by a person: the same card finds the same person.
jpki_identity = Table(
    "jpki_identity",
    metadata,
    Column("serial", String(64), primary_key=True),
    Column("user_number", String(16), ForeignKey("person.user_number"), nullable=False),
    Column("first_proofed_at", DateTime(timezone=True), nullable=False),
    Index("ix_jpki_identity_user_number", "user_number"),
)

# One phone's enrollment: challenge → JPKI proof → signing certificate → authentication certificate.
enrollment = Table(
    "enrollment",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("challenge", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # started | proofed | signing | complete
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("user_number", String(16), nullable=True),
    Column("device_id", String(32), nullable=True),
    Column("signing_serial", String(40), nullable=True),
    Column("authentication_serial", String(40), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Identity-proofing evidence, kept unchanged: what the card signed, with which certificate, when,
# what J-LIS said about the card and what we decided.
proofing_record = Table(
    "proofing_record",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("enrollment_id", String(32), nullable=False, unique=True),
    Column("user_number", String(16), nullable=False),
    Column("jpki_serial", String(64), nullable=False),
    Column("jpki_certificate_der", LargeBinary, nullable=False),
    Column("signed_data", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("jlis_status", String(16), nullable=False),
    Column("jlis_checked_at", DateTime(timezone=True), nullable=False),
    Column("new_person", Boolean, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_proofing_record_user_number", "user_number"),
)

certificate = Table(
    "certificate",
    metadata,
    Column("serial", String(40), primary_key=True),  # lower-case hex
    Column("issuer_id", String(32), ForeignKey("authority.id"), nullable=False),
    Column("user_number", String(16), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # signing | authentication | app
    Column("app_id", String(64), nullable=True),
    Column("identifier_name", String(64), nullable=False, unique=True),
    # A public key is certified once, ever (any kind, any person).
    Column("spki_sha256", String(64), nullable=False, unique=True),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("certificate_der", LargeBinary, nullable=False),
    Column("enrollment_id", String(32), nullable=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revocation_reason", String(24), nullable=True),
    Column("revoked_by", String(64), nullable=True),  # citizen | operator:<service> | jlis
    Column("revocation_comment", Text, nullable=True),
    Index("ix_certificate_user_number", "user_number"),
    Index("ix_certificate_issuer_revoked", "issuer_id", "revoked_at"),
)

crl = Table(
    "crl",
    metadata,
    Column("issuer_id", String(32), ForeignKey("authority.id"), primary_key=True),
    Column("number", BigInteger, primary_key=True),
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("next_update", DateTime(timezone=True), nullable=False),
    Column("revocation_count", BigInteger, nullable=False),  # authority.revocation_count covered
    Column("entries", Integer, nullable=False),
    Column("der", LargeBinary, nullable=False),
)

# Pre-signed OCSP responses (SHA-1 CertID, no nonce): the hot path serves these without the HSM.
ocsp_response = Table(
    "ocsp_response",
    metadata,
    Column("serial", String(40), primary_key=True),
    Column("issuer_id", String(32), nullable=False),
    Column("status", String(8), nullable=False),  # good | revoked
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("next_update", DateTime(timezone=True), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Index("ix_ocsp_response_next_update", "next_update"),
)

# jti of signed wallet requests, kept until they could no longer be fresh: a replay is refused.
request_jti = Table(
    "request_jti",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
