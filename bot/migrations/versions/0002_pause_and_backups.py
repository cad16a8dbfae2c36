"""pause requests and backup records on migrations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pause_requested", sa.Boolean(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("backups", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_column("backups")
        batch_op.drop_column("pause_requested")
