"""push (subscriptions, webhook deliveries) and metering

Revision ID: broker_0003
Revises: broker_0001
Create Date: 2026-11-24 02:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "broker_0003"
down_revision: str | Sequence[str] | None = "broker_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_subscription",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("purpose_code", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscription")),
    )
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_push_subscription_subscriber"), ["subscriber"], unique=False)

    op.create_table(
        "push_subscription_item",
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("item", "subscription_id", name=op.f("pk_push_subscription_item")),
    )
    op.create_table(
        "push_sequence",
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("user_number", sa.String(length=16), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subscriber", "user_number", name=op.f("pk_push_sequence")),
    )
    op.create_table(
        "push_delivery",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("change_id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("user_number", sa.String(length=16), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("purpose_code", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("value_source", sa.String(length=16), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_delivery")),
    )
    with op.batch_alter_table("push_delivery", schema=None) as batch_op:
        batch_op.create_index("ix_push_delivery_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_push_delivery_order", ["subscriber", "user_number", "seq"], unique=False)

    op.create_table(
        "usage_counter",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "month", "metric", "client_id", name=op.f("pk_usage_counter")),
    )
    op.create_table(
        "usage_citizen",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("user_number", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "month", "user_number", name=op.f("pk_usage_citizen")),
    )


def downgrade() -> None:
    op.drop_table("usage_citizen")
    op.drop_table("usage_counter")
    with op.batch_alter_table("push_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_push_delivery_order")
        batch_op.drop_index("ix_push_delivery_due")
    op.drop_table("push_delivery")
    op.drop_table("push_sequence")
    op.drop_table("push_subscription_item")
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscription_subscriber"))
    op.drop_table("push_subscription")
