"""the citizen dashboard's browser sessions and the changes it asked for

Revision ID: consent_0002
Revises: consent_0001
Create Date: 2026-11-24 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "consent_0002"
down_revision: str | Sequence[str] | None = "consent_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_session",
        sa.Column("id_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_number", sa.String(length=16), nullable=True),
        sa.Column("oidc_state", sa.String(length=64), nullable=True),
        sa.Column("oidc_nonce", sa.String(length=64), nullable=True),
        sa.Column("code_verifier", sa.String(length=128), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_dashboard_session")),
    )
    with op.batch_alter_table("dashboard_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dashboard_session_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "dashboard_change",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("user_number", sa.String(length=16), nullable=False),
        sa.Column("proposal", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["consent_request.id"],
            name=op.f("fk_dashboard_change_request_id_consent_request"),
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_dashboard_change")),
    )


def downgrade() -> None:
    op.drop_table("dashboard_change")
    with op.batch_alter_table("dashboard_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_session_expires_at"))
    op.drop_table("dashboard_session")
