"""one active key per purpose and algorithm

ID tokens are signed ES256 by default and RS256 for the clients that register it, so the
``id-token`` purpose needs an active key of each algorithm at once. The partial unique index moves
from (purpose) to (purpose, algorithm); the domain still keeps the other purposes to one active
key (activating one retires the previous, whatever its algorithm).

Revision ID: signer_0002
Revises: signer_0001
Create Date: 2026-11-24 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "signer_0002"
down_revision: str | Sequence[str] | None = "signer_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("state = 'active'")


def upgrade() -> None:
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.drop_index("uq_signing_key_active_purpose", postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
        batch_op.create_index(
            "uq_signing_key_active_purpose_algorithm",
            ["purpose", "algorithm"],
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        )


def downgrade() -> None:
    # Refused by the database while a purpose has active keys of two algorithms: retire one first.
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_signing_key_active_purpose_algorithm", postgresql_where=_ACTIVE, sqlite_where=_ACTIVE
        )
        batch_op.create_index(
            "uq_signing_key_active_purpose",
            ["purpose"],
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        )
