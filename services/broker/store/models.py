"""Tables owned by the broker. Only store/ touches the database.

No personal data values are ever stored: the exchange log names items, never their values; the
who-is-who view holds pairwise subjects and user identification numbers only.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from tsunagu.db import new_metadata
from tsunagu.service.diagnostics import define_platform_tables

metadata = new_metadata()
event_tables = define_platform_tables(metadata)

# -- catalog ----------------------------------------------------------------------------------

# A personal data item (``health.allergy``): its schema, labels, sensitivity and providers. The id
# is platform-wide (consent names items by it); the tenant that defined it administers it.
catalog_item = Table(
    "catalog_item",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("label_ja", String(200), nullable=False),
    Column("label_en", String(200), nullable=False),
    Column("sensitivity", String(16), nullable=False),  # normal | special-care
    Column("schema", JSON, nullable=False),  # JSON Schema (2020-12) of one value
    Column("providers", JSON, nullable=False),  # [{"client_id", "endpoint"}]; "jlis-sync" = internal
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# -- who is who (fed by idp events; a miss asks the idp) ---------------------------------------

# A party: an idp client (consumer, provider, subscriber) and its pairwise sector.
party = Table(
    "party",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("sector_identifier", String(255), nullable=True),
    Column("state", String(16), nullable=False),  # active | disabled
    Column("client_name", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A pairwise subject the idp issued: (sector, sub) → user number, and back.
subject = Table(
    "subject",
    metadata,
    Column("sector_identifier", String(255), primary_key=True),
    Column("sub", String(64), primary_key=True),
    Column("user_number", String(16), nullable=False),
    Index("ix_subject_sector_user", "sector_identifier", "user_number"),
)

# -- consent view (fed by consent.decision.recorded) -------------------------------------------

consent_decision = Table(
    "consent_decision",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("user_number", String(16), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # decide | withdraw
    Column("items", JSON, nullable=False),  # item → allow | deny
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("supersedes", String(64), nullable=True),
    # When a later decision superseded this one (recorded_at of that decision).
    Column("superseded_at", DateTime(timezone=True), nullable=True),
    Index("ix_consent_decision_user_recipient", "user_number", "recipient"),
)

# -- the exchange log ("やりとり履歴") ---------------------------------------------------------

exchange = Table(
    "exchange",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),  # the consumer's tenant (metering)
    Column("kind", String(16), nullable=False),  # pull | push
    Column("outcome", String(16), nullable=False),  # completed | denied | failed
    Column("reason", String(64), nullable=True),  # problem code of a denial or failure
    Column("consumer", String(64), nullable=False),
    Column("providers", JSON, nullable=False),  # client ids the data came (or would come) from
    Column("user_number", String(16), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("items", JSON, nullable=False),  # asked items
    Column("released", JSON, nullable=False),  # items delivered
    Column("consent", JSON, nullable=False),  # item → consent decision id used
    Column("at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer, nullable=True),
    Column("request_id", Text, nullable=True),
    Index("ix_exchange_user_at", "user_number", "at"),
    Index("ix_exchange_tenant_at", "tenant_id", "at"),
)

# -- push: subscriptions and webhook deliveries ------------------------------------------------

# A party's subscription: changes of these items, for this purpose, POSTed to its webhook.
push_subscription = Table(
    "push_subscription",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("subscriber", String(64), nullable=False, index=True),  # client id
    Column("tenant_id", String(64), nullable=False),
    Column("items", JSON, nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Which subscriptions want an item (the fan-out's lookup).
push_subscription_item = Table(
    "push_subscription_item",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("subscription_id", String(32), primary_key=True),
)

# The last sequence number given per (subscriber, citizen): deliveries go out in this order.
push_sequence = Table(
    "push_sequence",
    metadata,
    Column("subscriber", String(64), primary_key=True),
    Column("user_number", String(16), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

# One webhook delivery. ``value`` is the pushed value only while the delivery is pending (or dead,
# for redelivery, until the dead-letter retention ends); it is cleared once delivered or cancelled.
push_delivery = Table(
    "push_delivery",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("change_id", String(32), nullable=False),
    Column("subscription_id", String(32), nullable=False),
    Column("subscriber", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("user_number", String(16), nullable=False),
    Column("item", String(64), nullable=False),
    Column("purpose_code", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("value_source", String(16), nullable=False),  # inline | jlis-sync | none
    Column("value", JSON(none_as_null=True), nullable=True),
    Column("state", String(16), nullable=False),  # pending | sending | delivered | dead | cancelled
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),  # a claim (state sending)
    Column("last_error", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_push_delivery_due", "state", "next_attempt_at"),
    Index("ix_push_delivery_order", "subscriber", "user_number", "seq"),
)

# -- metering ----------------------------------------------------------------------------------

# Counters per tenant, month (Japan time, YYYY-MM) and metric; ``client_id`` is "" for tenant-wide
# metrics (logins) and the calling party for ``api_calls``.
usage_counter = Table(
    "usage_counter",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("client_id", String(64), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Citizens who logged in to a tenant's client that month (active citizens = these ∪ the citizens
# of that month's exchanges).
usage_citizen = Table(
    "usage_citizen",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("user_number", String(16), primary_key=True),
)

# -- non-personal data (NGSI-LD subset) ---------------------------------------------------------

# JSONB on PostgreSQL (GIN-indexable, compared by value); plain JSON elsewhere (SQLite migrations).
JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")
SQLITE_INTEGER_ID = BigInteger().with_variant(Integer(), "sqlite")

# A dataset of non-personal data: which entity types it holds and who may read and write it.
ngsild_dataset = Table(
    "ngsild_dataset",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("label_ja", String(200), nullable=False),
    Column("label_en", String(200), nullable=False),
    Column("entity_types", JSON, nullable=False),  # [type]; a type belongs to one dataset
    Column("access", JSON, nullable=False),  # "public" | [client_id] (read)
    Column("writers", JSON, nullable=False),  # [client_id]
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# An entity: its attributes as served (normalized), a flat map of attribute values for ``q``
# (``attr`` → value or object, ``attr.sub`` → sub-attribute value) and the point of its
# ``location`` for geo-queries.
ngsild_entity = Table(
    "ngsild_entity",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("type", String(256), nullable=False),
    Column("dataset_id", String(64), nullable=False),
    Column("attrs", JSON_DOCUMENT, nullable=False),
    Column("query_values", JSON_DOCUMENT, nullable=False),
    Column("context", JSON, nullable=True),  # the @context the writer gave (echoed, not expanded)
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
    Index("ix_ngsild_entity_type_id", "type", "id"),
    Index("ix_ngsild_entity_dataset_id", "dataset_id", "id"),
    Index("ix_ngsild_entity_lat_lon", "lat", "lon"),
    Index(
        "ix_ngsild_entity_query_values",
        "query_values",
        postgresql_using="gin",
        postgresql_ops={"query_values": "jsonb_path_ops"},
    ),
)

# A subscription of a party (idp client) to changes of entities.
ngsild_subscription = Table(
    "ngsild_subscription",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),  # client id
    Column("entity_types", JSON, nullable=False),  # [type] (for the change → subscription lookup)
    Column("document", JSON, nullable=False),  # the subscription as the party gave it (normalized)
    Column("active", Boolean, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A notification to send (written in the transaction of the change; a worker sends it).
ngsild_notification = Table(
    "ngsild_notification",
    metadata,
    Column("id", SQLITE_INTEGER_ID, primary_key=True, autoincrement=True),
    Column("subscription_id", String(256), nullable=False, index=True),
    Column("endpoint", String(2048), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ngsild_notification_due", "state", "next_attempt_at"),
)

# -- delegated signing keys (domain/delegated_keys.py) --------------------------------------------

# Each replica's in-memory signing key, certified by the HSM's ``exchange`` key: public JWK and the
# delegation JWT, published at /v1/jwks until ``not_after``. Never a private key.
signing_delegation = Table(
    "signing_delegation",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("jwk", JSON, nullable=False),
    Column("delegation", Text, nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False, index=True),
)
