"""initial state schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 05:47:10.609408
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "barq_migrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_key", sa.String(length=40), nullable=False),
        sa.Column("runbook", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_barq_migrations")),
        sa.UniqueConstraint("run_key", name=op.f("uq_barq_migrations_run_key")),
    )
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_barq_migrations_state"), ["state"], unique=False)

    op.create_table(
        "barq_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("thread_key", sa.String(length=100), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_barq_outbox")),
    )
    with op.batch_alter_table("barq_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_barq_outbox_message_key"), ["message_key"], unique=False
        )

    op.create_table(
        "barq_slack_messages",
        sa.Column("message_key", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("message_key", name=op.f("pk_barq_slack_messages")),
    )
    op.create_table(
        "barq_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"], ["barq_migrations.id"], name=op.f("fk_barq_approvals_migration_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_barq_approvals")),
        sa.UniqueConstraint("migration_id", "user_id", name="uq_barq_approvals_migration_user"),
    )
    op.create_table(
        "barq_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"], ["barq_migrations.id"], name=op.f("fk_barq_audit_log_migration_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_barq_audit_log")),
    )
    with op.batch_alter_table("barq_audit_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_barq_audit_log_migration_id"), ["migration_id"], unique=False
        )

    op.create_table(
        "barq_step_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"], ["barq_migrations.id"], name=op.f("fk_barq_step_runs_migration_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_barq_step_runs")),
    )
    with op.batch_alter_table("barq_step_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_barq_step_runs_migration", ["migration_id", "phase", "step_index"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("barq_step_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_barq_step_runs_migration")

    op.drop_table("barq_step_runs")
    with op.batch_alter_table("barq_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_barq_audit_log_migration_id"))

    op.drop_table("barq_audit_log")
    op.drop_table("barq_approvals")
    op.drop_table("barq_slack_messages")
    with op.batch_alter_table("barq_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_barq_outbox_message_key"))

    op.drop_table("barq_outbox")
    with op.batch_alter_table("barq_migrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_barq_migrations_state"))

    op.drop_table("barq_migrations")
