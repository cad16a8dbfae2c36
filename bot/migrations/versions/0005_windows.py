"""downtime windows: when each approved run is due, the end of its window, and its schedule

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("window_end", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("schedule", sa.JSON(), nullable=True))
        batch_op.create_index("ix_barq_migrations_due_at", ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_index("ix_barq_migrations_due_at")
        batch_op.drop_column("schedule")
        batch_op.drop_column("window_end")
        batch_op.drop_column("due_at")
