"""The bot's own state tables (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC as a naive timestamp and always returns an aware datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

migrations = Table(
    "barq_migrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_key", String(40), nullable=False, unique=True),
    Column("runbook", String(100), nullable=False),
    Column("target", String(100), nullable=False),
    Column("params", JSON, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("plan_hash", String(64), nullable=False),
    Column("counts", JSON, nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("requester", String(64), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("pause_requested", Boolean, nullable=False, default=False, server_default="0"),
    Column("backups", JSON),
    Column("current_step", Integer, nullable=False, default=0),
    Column("error", Text),
    # Slack's trigger_id of the request: a resent request finds the migration it made
    Column("request_key", String(100), unique=True),
    # a rollback is a migration of its own: the migration it undoes, and (if an approver
    # waived it) why it may restore a backup that was not verified
    Column("rollback_of", Integer, ForeignKey("barq_migrations.id"), index=True),
    Column("waiver", Text),
    # downtime windows: when the run is due (the start of its window), when that window
    # ends, and its schedule (estimate, out-of-window, reminders sent, paused by the window)
    Column("due_at", UTCDateTime, index=True),
    Column("window_end", UTCDateTime),
    Column("schedule", JSON),
    # /migrate throttle's level (0 to 1: how much the run is slowed by hand), kept until
    # lifted (``off``): it holds across pauses, resumes and restarts of the bot
    Column("manual_throttle", Float),
)

approvals = Table(
    "barq_approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("migration_id", Integer, ForeignKey("barq_migrations.id"), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("decision", String(10), nullable=False),
    Column("plan_hash", String(64), nullable=False),
    Column("reason", Text),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("migration_id", "user_id", name="uq_barq_approvals_migration_user"),
)

step_runs = Table(
    "barq_step_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("migration_id", Integer, ForeignKey("barq_migrations.id"), nullable=False),
    Column("phase", String(10), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("state", String(20), nullable=False),
    Column("rows", Integer, nullable=False, default=0),
    Column("detail", Text),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index("ix_barq_step_runs_migration", "migration_id", "phase", "step_index"),
)

audit_log = Table(
    "barq_audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("migration_id", Integer, ForeignKey("barq_migrations.id"), index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

outbox = Table(
    "barq_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_key", String(100), nullable=False, index=True),
    Column("channel", String(64), nullable=False),
    Column("thread_key", String(100)),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
)

slack_messages = Table(
    "barq_slack_messages",
    metadata,
    Column("message_key", String(100), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("ts", String(32), nullable=False),
)
