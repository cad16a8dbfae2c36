"""What the use cases need from the outside world, as Protocols."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.domain.approval import ApprovalPolicy, PriorApproval
    from bot.domain.control import Control, StepOutcome
    from bot.domain.lifecycle import Event, State
    from bot.domain.plan import Plan, PlannedStep
    from bot.domain.progress import LiveProgress
    from bot.domain.records import AuditEntry, Migration, StepRun
    from bot.domain.runbook import Runbook
    from bot.errors import RunbookError

Clock = Callable[[], datetime]


class Notifier(Protocol):
    """Queues what people must see; called inside the state change's transaction."""

    def approval(
        self,
        m: Migration,
        approvals: list[PriorApproval],
        policy: ApprovalPolicy,
        decided: AuditEntry | None = None,
    ) -> None: ...

    def progress(
        self, m: Migration, runs: list[StepRun], now: datetime, live: LiveProgress | None
    ) -> None: ...

    def outcome(self, m: Migration, runs: list[StepRun], now: datetime) -> None: ...

    def notice(self, m: Migration, text: str, now: datetime) -> None: ...

    def episode(self, m: Migration, key: str, text: str, now: datetime) -> None:
        """Post ``text`` in the run's thread as the one message of episode ``key`` (e.g. a
        blocking episode); the same key again updates that message in place."""

    def announce(self, m: Migration, text: str, now: datetime) -> None:
        """Tell the stakeholders (the notify channel) about ``m``: scheduled, reminders,
        moved."""
        ...


class Pager(Protocol):
    """Pages a target's emergency contacts. Like the Notifier it only queues (in the outbox,
    inside the state change's transaction), so a page survives restarts and outages and is
    sent once per event; one incident per migration (its dedup key)."""

    def trigger(self, m: Migration, reason: str, details: dict[str, Any], now: datetime) -> None:
        """Open (or add to) the migration's incident: ``reason`` is one line for a person
        woken at night; ``details`` the step, error, rows committed, backup."""
        ...

    def acknowledge(self, m: Migration, user: str, now: datetime) -> None:
        """Someone took the migration's incident (``user`` clicked Acknowledge)."""
        ...

    def resolve(self, m: Migration, why: str, now: datetime) -> None:
        """Close the migration's incident, if one is open (resumed to success, rolled back,
        cancelled)."""
        ...

    def change(self, m: Migration, summary: str, now: datetime) -> None:
        """Record a change event (production runs at start and finish); never pages."""
        ...


class NoPager:
    """The Pager when no contacts are configured: pages go nowhere."""

    def trigger(self, m: Migration, reason: str, details: dict[str, Any], now: datetime) -> None:
        """Nothing to page."""

    def acknowledge(self, m: Migration, user: str, now: datetime) -> None:
        """Nothing to acknowledge."""

    def resolve(self, m: Migration, why: str, now: datetime) -> None:
        """Nothing to resolve."""

    def change(self, m: Migration, summary: str, now: datetime) -> None:
        """Nothing to record."""


class Watcher(Protocol):
    """Watches an active run from outside it (the blocking monitor): started by the engine
    when the run starts or resumes, cancelled when it stops."""

    async def watch(
        self,
        migration_id: int,
        control: Control,
        pager: Pager,
        live: Callable[[], LiveProgress | None],
    ) -> None:
        """Watch until cancelled; act on the run through ``control`` (throttle, pause), page
        through ``pager``, and add what it sees of the running step to ``live()``."""
        ...


class Directory(Protocol):
    """Who belongs to which Slack user group."""

    async def groups_of(self, user: str, groups: list[str]) -> set[str]: ...


class Store(Protocol):
    """The bot's state of record. Every call is one transaction, unless made inside
    ``transaction()``, which groups the calls of one thread into one."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def create(
        self,
        plan: Plan,
        counts: dict[str, int],
        requester: str,
        now: datetime,
        *,
        request_key: str | None = None,
        rollback_of: int | None = None,
        waiver: str | None = None,
    ) -> tuple[Migration, bool]: ...

    def earlier_request(
        self, plan: Plan, requester: str, request_key: str | None
    ) -> Migration | None: ...

    def get(self, migration_id: int) -> Migration: ...

    def lock(self, migration_id: int) -> Migration: ...

    def recent(self, limit: int = 10, offset: int = 0) -> list[Migration]: ...

    def in_states(self, *states: State, target: str | None = None) -> list[Migration]: ...

    def rollbacks_of(self, migration_id: int) -> list[Migration]: ...

    def transition(
        self,
        migration_id: int,
        event: Event,
        *,
        actor: str,
        now: datetime,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Migration: ...

    def set_fields(self, migration_id: int, now: datetime, **fields: Any) -> Migration: ...

    def add_backup(self, migration_id: int, backup: dict[str, Any], now: datetime) -> None: ...

    def prior_approvals(self, migration_id: int) -> list[PriorApproval]: ...

    def void_approvals(self, migration_id: int) -> list[str]: ...

    def record_decision(
        self,
        migration_id: int,
        *,
        user: str,
        decision: str,
        plan_hash: str,
        now: datetime,
        reason: str | None = None,
        event: Event | None = None,
    ) -> Migration: ...

    def step_started(
        self, migration_id: int, phase: str, index: int, name: str, kind: str, now: datetime
    ) -> None: ...

    def step_finished(
        self,
        migration_id: int,
        phase: str,
        index: int,
        *,
        state: str,
        rows: int,
        detail: str | None,
        now: datetime,
    ) -> None: ...

    def step_rows(self, migration_id: int, phase: str, index: int, rows: int) -> None: ...

    def step_runs(self, migration_id: int, phase: str | None = None) -> list[StepRun]: ...

    def audit(
        self,
        migration_id: int | None,
        actor: str,
        action: str,
        detail: dict[str, Any],
        now: datetime,
    ) -> None: ...

    def audit_trail(self, migration_id: int) -> list[AuditEntry]: ...

    def achieved_rates(
        self, target: str, runbook: str
    ) -> tuple[dict[str, float], float | None]: ...

    def scheduled(self, target: str | None = None) -> list[Migration]: ...


class SqlDialect(Protocol):
    """What the use cases need to know of a target's SQL dialect."""

    @property
    def name(self) -> str: ...


class Target(Protocol):
    """A target database as the use cases see it; every method blocks (call it in a thread)."""

    @property
    def name(self) -> str: ...

    @property
    def dialect(self) -> SqlDialect: ...

    def describe(self) -> str: ...

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        """The query's first value; raises QueryFailed with the database's message."""
        ...

    def count(self, sql: str, params: dict[str, Any]) -> int:
        """A count query's value; raises QueryFailed with the database's message."""
        ...

    def prepare(self) -> None:
        """Create the bot's own small tables on the target (checkpoints, journal) if missing."""
        ...

    def blocking_sessions(self) -> list[dict[str, Any]] | None:
        """Who is blocked on the target now and by whom; None when the dialect cannot say."""
        ...

    def show_command_fields(self, plan: Plan) -> Plan:
        """``plan`` with its command steps shown as they will run on the target (secrets
        masked); raises TargetFieldError if a command step needs a field the target lacks."""
        ...


class StepRunner(Protocol):
    """Runs the steps of a migration on its target database (the executors)."""

    def committed_steps(self, m: Migration) -> set[str]: ...

    async def run(
        self, m: Migration, step: PlannedStep, control: Control, live: LiveProgress
    ) -> StepOutcome: ...


class Runbooks(Protocol):
    """The runbooks as their files are now (reloaded when the files change)."""

    def get(self, name: str) -> Runbook | None: ...

    def all(self) -> list[Runbook]: ...

    def problem(self, name: str) -> RunbookError | None: ...
