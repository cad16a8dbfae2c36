"""request key on migrations: Slack's trigger_id, so a resent request finds the first

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_key", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint("uq_barq_migrations_request_key", ["request_key"])


def downgrade() -> None:
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_barq_migrations_request_key", type_="unique")
        batch_op.drop_column("request_key")
