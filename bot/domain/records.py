"""What the bot records about each migration: the migration, its step runs, its audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.lifecycle import State
from bot.domain.plan import Plan


@dataclass(frozen=True)
class Migration:
    """A migration as stored."""

    id: int
    run_key: str
    plan: Plan
    counts: dict[str, int]
    state: State
    requester: str
    requested_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    pause_requested: bool
    current_step: int
    error: str | None
    backups: list[dict[str, Any]]
    request_key: str | None = None  # Slack's trigger_id of the request
    rollback_of: int | None = None  # a rollback: the id of the migration it undoes
    waiver: str | None = None  # a rollback: why an approver let it restore an unverified backup
    due_at: datetime | None = None  # downtime windows: when its window opens (or opened)
    window_end: datetime | None = None  # ... and when that window ends
    schedule: dict[str, Any] | None = None  # estimate, out-of-window, reminders, window pause
    manual_throttle: float | None = None  # /migrate throttle's level (0 to 1) until lifted

    @property
    def runbook(self) -> str:
        """The runbook's name."""
        return self.plan.runbook

    @property
    def target(self) -> str:
        """The target database's name."""
        return self.plan.target


@dataclass(frozen=True)
class StepRun:
    """One execution of one step."""

    phase: str
    step_index: int
    name: str
    kind: str
    state: str
    rows: int
    detail: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to which migration, and when."""

    migration_id: int | None
    actor: str
    action: str
    detail: dict[str, Any]
    at: datetime
