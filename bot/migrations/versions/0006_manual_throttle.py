"""manual throttle: /migrate throttle's level is part of the run's record (survives a pause,
a resume and a restart of the bot) until it is lifted

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manual_throttle", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_column("manual_throttle")
