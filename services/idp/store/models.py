"""Tables owned by idp. Only store/ touches the database.

Personal data: none. The idp keys everything on the user identification number and keeps no
basic 4 information: claims are read from jlis-sync when (and only when) they are released.
Secrets (client secrets, registration and initial access tokens, codes, refresh tokens, login
transaction browser bindings) are stored as SHA-256 hashes only.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

# A municipality. Its relying parties register under it (admin API, or RFC 7591 with the
# tenant's initial access token).
tenant = Table(
    "tenant",
    metadata,
    Column("id", String(64), primary_key=True),  # slug: ebetsu, maebashi …
    Column("name_ja", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("initial_access_token_hash", String(64), nullable=True),
    Column("state", String(12), nullable=False),  # active | disabled
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A relying party (or a service client). ``metadata_json`` holds the RFC 7591 metadata as
# registered (validated); the columns repeat what the hot paths filter on.
client = Table(
    "client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenant.id"), nullable=False, index=True),
    Column("token_endpoint_auth_method", String(32), nullable=False),
    Column("client_secret_hash", String(64), nullable=True),
    Column("client_secret_expires_at", DateTime(timezone=True), nullable=True),
    Column("registration_access_token_hash", String(64), nullable=True),
    # The pairwise sector: host of sector_identifier_uri, else of the (single-host) redirect URIs.
    Column("sector_identifier", String(255), nullable=False),
    # The client may receive the user identification number (claim ``user_number``) because it
    # has a legal basis; the basis is recorded (e.g. 番号法 article, ordinance) — never by default.
    Column("user_number_legal_basis", Text, nullable=True),
    Column("metadata_json", JSON, nullable=False),
    Column("state", String(12), nullable=False),  # active | disabled
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# ``jti`` of client assertions (private_key_jwt), DPoP proofs and wallet approvals already seen,
# remembered until they could no longer be accepted anyway.
seen_jti = Table(
    "seen_jti",
    metadata,
    Column("scope", String(16), primary_key=True),  # client | dpop | wallet
    Column("issuer", String(128), primary_key=True),  # client_id, DPoP key thumbprint, cert serial
    Column("jti", String(128), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# RFC 9126 pushed authorization requests: the validated request parameters, used once.
pushed_request = Table(
    "pushed_request",
    metadata,
    Column("request_uri_hash", String(64), primary_key=True),
    Column("client_id", String(64), ForeignKey("client.client_id"), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# One authorization request waiting for the citizen: the browser polls it, the wallet fetches and
# signs it. Also a CIBA request (kind = ciba): then the client polls or is pinged.
login_transaction = Table(
    "login_transaction",
    metadata,
    Column("id", String(43), primary_key=True),  # random, shown in the QR code
    Column("kind", String(8), nullable=False),  # browser | ciba
    Column("client_id", String(64), ForeignKey("client.client_id"), nullable=False, index=True),
    # The validated authorization (or CIBA) request: scope, claims, nonce, PKCE, redirect_uri …
    Column("parameters", JSON, nullable=False),
    # Browser binding: SHA-256 of a secret kept in the browser's cookie (browser kind only).
    Column("browser_binding_hash", String(64), nullable=True),
    # The challenge the wallet signs (random, single use) and a short code both screens show.
    Column("challenge", String(43), nullable=False),
    Column("display_code", String(8), nullable=False),
    # CIBA: the person the client named (login_hint), so only their wallet sees the request.
    Column("hinted_user_number", String(16), nullable=True, index=True),
    # pending | consenting | approved | denied | expired | completed
    Column("state", String(12), nullable=False),
    Column("user_number", String(16), nullable=True),
    Column("certificate_serial", String(40), nullable=True),
    Column("certificate_kind", String(16), nullable=True),  # authentication | app
    Column("amr", JSON, nullable=True),
    Column("acr", String(64), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    # The wallet's signed approval as presented (evidence; a compact JWS, no personal data).
    Column("approval_jws", Text, nullable=True),
    # RFC 9396 data access: the consent request the approval created (state ``consenting`` until
    # the citizen's signed decision answers it).
    Column("consent_request_id", String(64), nullable=True),
    Column("error", String(32), nullable=True),
    # CIBA polling: last poll time (slow_down), ping sent.
    Column("last_polled_at", DateTime(timezone=True), nullable=True),
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# The IdP's session with a browser (cookie holds a random id; only its hash is stored).
idp_session = Table(
    "idp_session",
    metadata,
    Column("id", String(43), primary_key=True),  # the OIDC ``sid`` (not the cookie value)
    Column("cookie_hash", String(64), nullable=False, unique=True),
    Column("user_number", String(16), nullable=False, index=True),
    Column("certificate_serial", String(40), nullable=False, index=True),
    Column("auth_time", DateTime(timezone=True), nullable=False),
    Column("acr", String(64), nullable=False),
    Column("amr", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", String(32), nullable=True),  # logout | certificate-revoked | expired
)

# A grant: what one client obtained for one person in one authorization (code or CIBA) or for
# itself (client_credentials). Codes, refresh tokens and access tokens hang off it, so revoking
# the grant revokes the family.
grant = Table(
    "grant",
    metadata,
    Column("id", String(43), primary_key=True),
    Column("client_id", String(64), ForeignKey("client.client_id"), nullable=False, index=True),
    Column("user_number", String(16), nullable=True, index=True),  # none for client_credentials
    Column("session_id", String(43), ForeignKey("idp_session.id"), nullable=True, index=True),
    Column("certificate_serial", String(40), nullable=True, index=True),
    Column("scope", Text, nullable=False),
    Column("claims", JSON, nullable=True),  # the OIDC ``claims`` request parameter
    Column("authorization_details", JSON, nullable=True),  # RFC 9396, granted
    Column("auth_time", DateTime(timezone=True), nullable=True),
    Column("acr", String(64), nullable=True),
    Column("amr", JSON, nullable=True),
    Column("dpop_jkt", String(43), nullable=True),  # refresh tokens of public clients are bound
    # The citizen's consent decision behind the authorization_details (Grant Management grant_id).
    Column("consent_id", String(64), nullable=True, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", String(32), nullable=True),  # code-replay | refresh-reuse | logout …
)

authorization_code = Table(
    "authorization_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("grant_id", String(43), ForeignKey("grant.id"), nullable=False, index=True),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("nonce", String(512), nullable=True),
    Column("dpop_jkt", String(43), nullable=True),  # RFC 9449 §10: dpop_jkt on the request
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# Refresh tokens rotate: each use marks the token used and issues the next one of the family.
# A used token presented again is reuse: the whole grant is revoked.
refresh_token = Table(
    "refresh_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(43), ForeignKey("grant.id"), nullable=False, index=True),
    Column("generation", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Access tokens are RFC 9068 JWTs; their jti is kept so introspection and revocation work.
access_token = Table(
    "access_token",
    metadata,
    Column("jti", String(43), primary_key=True),
    Column("grant_id", String(43), ForeignKey("grant.id"), nullable=False, index=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Which clients took part in a session (the back-channel logout fan-out) and their ``sid``.
session_client = Table(
    "session_client",
    metadata,
    Column("session_id", String(43), ForeignKey("idp_session.id"), primary_key=True),
    Column("client_id", String(64), ForeignKey("client.client_id"), primary_key=True),
    Column("first_at", DateTime(timezone=True), nullable=False),
)

# Back-channel logout deliveries: written in the logout's transaction, sent after it (retried).
logout_delivery = Table(
    "logout_delivery",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("session_id", String(43), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_logout_delivery_pending", "delivered", "next_attempt_at"),
)

# When J-LIS last told us a resident's basic 4 information changed (``resident.updated``): the
# OIDC ``updated_at`` of the claims released about them. A time per user number, nothing else.
resident_update = Table(
    "resident_update",
    metadata,
    Column("user_number", String(16), primary_key=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Pairwise subjects handed out, so a client's own ``sub`` can name the person back to us (CIBA
# ``login_hint``, the broker's lookups). ``sub`` is HMAC(sector, user number): this table only
# remembers the ones that were issued.
subject = Table(
    "subject",
    metadata,
    Column("sector_identifier", String(255), primary_key=True),
    Column("sub", String(64), primary_key=True),
    Column("user_number", String(16), nullable=False, index=True),
    Column("first_at", DateTime(timezone=True), nullable=False),
)
