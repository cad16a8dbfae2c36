"""rollbacks: the migration a rollback undoes, and the waiver of an unverified backup

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rollback_of", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("waiver", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            "fk_barq_migrations_rollback_of", "barq_migrations", ["rollback_of"], ["id"]
        )
        batch_op.create_index("ix_barq_migrations_rollback_of", ["rollback_of"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_index("ix_barq_migrations_rollback_of")
        batch_op.drop_constraint("fk_barq_migrations_rollback_of", type_="foreignkey")
        batch_op.drop_column("waiver")
        batch_op.drop_column("rollback_of")
