"""The state store: migrations, approvals, step runs and the audit log, in SQLAlchemy.

Every method is one transaction. State changes go through the lifecycle table and a
compare-and-set on the current state, so two racing clicks cannot both move a migration.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from bot.adapters.tables import approvals, audit_log, migrations, step_runs
from bot.adapters.targets.dialects import dialect_for
from bot.domain.approval import PriorApproval
from bot.domain.lifecycle import Event, State, next_state
from bot.domain.plan import Plan
from bot.domain.records import AuditEntry, Migration, StepRun
from bot.errors import InvalidTransition, NotFound, Refused, StateUnavailable

logger = logging.getLogger(__name__)


class _Outage:
    """One log line when the state database becomes unreachable, one when it is back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                logger.warning("the state database is unreachable (%s); retrying", cause)

    def ok(self) -> None:
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._since is not None:
                logger.warning(
                    "the state database is reachable again after %.1f s",
                    time.monotonic() - self._since,
                )
                self._since = None


def state_engine(url: str) -> Engine:
    """The engine of the bot's state database; on SQLite it enforces foreign keys, as the
    other databases always do."""
    engine = create_engine(url, pool_pre_ping=True)
    dialect_for(engine).configure(engine)
    return engine


def _migration(row: Any) -> Migration:
    return Migration(
        id=row.id,
        run_key=row.run_key,
        plan=Plan.model_validate(row.plan),
        counts=dict(row.counts),
        state=State(row.state),
        requester=row.requester,
        requested_at=row.requested_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cancel_requested=bool(row.cancel_requested),
        pause_requested=bool(row.pause_requested),
        current_step=row.current_step,
        error=row.error,
        backups=list(row.backups or []),
        request_key=row.request_key,
        rollback_of=row.rollback_of,
        waiver=row.waiver,
        due_at=row.due_at,
        window_end=row.window_end,
        schedule=dict(row.schedule) if row.schedule else None,
        manual_throttle=row.manual_throttle,
    )


class Store:
    """Reads and writes the bot's state; every public method commits before it returns."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._outage = _Outage()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Group several store calls (in this thread) into one transaction."""
        with self._tx() as conn:
            yield conn

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        try:
            with self.engine.begin() as conn:
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None
        except (OperationalError, InterfaceError) as exc:
            self._outage.failed(exc)
            raise StateUnavailable() from exc
        self._outage.ok()

    # -- migrations -------------------------------------------------------------------------

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
    ) -> tuple[Migration, bool]:
        """Record a new migration request and audit it; return it and True. A request made
        already, with the same ``request_key`` (Slack's trigger_id: a resent request), or by
        the same user for the same plan while that one is pending, returns that one and
        False instead. A rollback names the migration it undoes (``rollback_of``) and, if an
        approver allowed it to restore an unverified backup, why (``waiver``)."""
        rollback = {"rollback_of": rollback_of, "waiver": waiver}
        try:
            return self._create(plan, counts, requester, now, request_key, rollback)
        except IntegrityError:  # the same request_key was inserted meanwhile
            with self._tx() as conn:
                earlier = self._first(conn, migrations.c.request_key == request_key)
            if earlier is None:
                raise
            return earlier, False

    def _create(
        self,
        plan: Plan,
        counts: dict[str, int],
        requester: str,
        now: datetime,
        request_key: str | None,
        rollback: dict[str, Any],
    ) -> tuple[Migration, bool]:
        with self._tx() as conn:
            earlier = self._earlier(conn, plan, requester, request_key)
            if earlier is not None:
                return earlier, False
            result = conn.execute(
                insert(migrations).values(
                    run_key=f"barq-{secrets.token_hex(6)}",
                    runbook=plan.runbook,
                    target=plan.target,
                    params=plan.params,
                    plan=plan.model_dump(mode="json"),
                    plan_hash=plan.hash,
                    counts=counts,
                    state=State.REQUESTED.value,
                    requester=requester,
                    requested_at=now,
                    updated_at=now,
                    cancel_requested=False,
                    pause_requested=False,
                    current_step=0,
                    request_key=request_key,
                    **rollback,
                )
            )
            assert result.inserted_primary_key is not None
            new_id = int(result.inserted_primary_key[0])
            detail = {"plan_hash": plan.hash, **{k: v for k, v in rollback.items() if v}}
            self._audit(conn, new_id, requester, "request", detail, now)
            return self._get(conn, new_id), True

    def earlier_request(
        self, plan: Plan, requester: str, request_key: str | None
    ) -> Migration | None:
        """The migration a request repeats, if it does: the one made with the same
        ``request_key`` (a resent request), or the same plan by the same requester while that
        one is still pending."""
        with self._tx() as conn:
            return self._earlier(conn, plan, requester, request_key)

    def _earlier(
        self, conn: Connection, plan: Plan, requester: str, request_key: str | None
    ) -> Migration | None:
        resent = self._first(conn, migrations.c.request_key == request_key) if request_key else None
        return resent or self._first(
            conn,
            migrations.c.requester == requester,
            migrations.c.plan_hash == plan.hash,
            migrations.c.state.in_([State.REQUESTED.value, State.APPROVED.value]),
        )

    def _first(self, conn: Connection, *where: Any) -> Migration | None:
        row = conn.execute(select(migrations).where(*where).order_by(migrations.c.id)).first()
        return None if row is None else _migration(row)

    def lock(self, migration_id: int) -> Migration:
        """Serialize changes to one migration: inside ``transaction()``, and as its first
        statement, take the migration's row lock (a no-op write: a row lock on PostgreSQL and
        SQL Server, the database's write lock on SQLite, where a transaction's first write
        must come before its reads), then read it. A second transaction that locks the same
        migration waits until the first commits, then reads what it committed."""
        with self._tx() as conn:
            conn.execute(
                update(migrations)
                .where(migrations.c.id == migration_id)
                .values(updated_at=migrations.c.updated_at)
            )
            return self._get(conn, migration_id)

    def get(self, migration_id: int) -> Migration:
        """The migration with that id; raise NotFound otherwise."""
        with self._tx() as conn:
            return self._get(conn, migration_id)

    def _get(self, conn: Connection, migration_id: int) -> Migration:
        row = conn.execute(select(migrations).where(migrations.c.id == migration_id)).first()
        if row is None:
            raise NotFound(f"there is no migration #{migration_id}: see /migrate status")
        return _migration(row)

    def recent(self, limit: int = 10, offset: int = 0) -> list[Migration]:
        """The most recently requested migrations, newest first, skipping the ``offset``
        newest (a page of ``/migrate status``)."""
        with self._tx() as conn:
            rows = conn.execute(
                select(migrations).order_by(migrations.c.id.desc()).limit(limit).offset(offset)
            )
            return [_migration(r) for r in rows]

    def rollbacks_of(self, migration_id: int) -> list[Migration]:
        """Every rollback requested of the migration, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                select(migrations)
                .where(migrations.c.rollback_of == migration_id)
                .order_by(migrations.c.id)
            )
            return [_migration(r) for r in rows]

    def in_states(self, *states: State, target: str | None = None) -> list[Migration]:
        """Every migration in one of ``states`` (on ``target``, if given), oldest first."""
        with self._tx() as conn:
            query = select(migrations).where(migrations.c.state.in_([s.value for s in states]))
            if target is not None:
                query = query.where(migrations.c.target == target)
            rows = conn.execute(query.order_by(migrations.c.id))
            return [_migration(r) for r in rows]

    def transition(
        self,
        migration_id: int,
        event: Event,
        *,
        actor: str,
        now: datetime,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Migration:
        """Apply ``event`` (and set ``fields``) if the lifecycle allows it; audit it."""
        with self._tx() as conn:
            return self._transition(conn, migration_id, event, actor, now, detail or {}, fields)

    def _transition(
        self,
        conn: Connection,
        migration_id: int,
        event: Event,
        actor: str,
        now: datetime,
        detail: dict[str, Any],
        fields: dict[str, Any],
    ) -> Migration:
        current = self._get(conn, migration_id)
        new_state = next_state(current.state, event)
        done = conn.execute(
            update(migrations)
            .where(migrations.c.id == migration_id, migrations.c.state == current.state.value)
            .values(state=new_state.value, updated_at=now, **fields)
        )
        if done.rowcount != 1:  # somebody else moved it first
            raise InvalidTransition(self._get(conn, migration_id).state.value, event.value)
        self._audit(conn, migration_id, actor, event.value, detail, now)
        return self._get(conn, migration_id)

    def set_fields(self, migration_id: int, now: datetime, **fields: Any) -> Migration:
        """Update non-state fields (progress, cancel flag)."""
        with self._tx() as conn:
            conn.execute(
                update(migrations)
                .where(migrations.c.id == migration_id)
                .values(updated_at=now, **fields)
            )
            return self._get(conn, migration_id)

    def add_backup(self, migration_id: int, backup: dict[str, Any], now: datetime) -> None:
        """Record where a verified backup of the target was taken, and audit it."""
        with self._tx() as conn:
            m = self._get(conn, migration_id)
            conn.execute(
                update(migrations)
                .where(migrations.c.id == migration_id)
                .values(backups=[*m.backups, backup], updated_at=now)
            )
            self._audit(conn, migration_id, "bot", "backup", backup, now)

    # -- approvals --------------------------------------------------------------------------

    def prior_approvals(self, migration_id: int) -> list[PriorApproval]:
        """The approvals recorded for the migration."""
        with self._tx() as conn:
            rows = conn.execute(
                select(approvals).where(
                    approvals.c.migration_id == migration_id, approvals.c.decision == "approve"
                )
            )
            return [PriorApproval(user=r.user_id, plan_hash=r.plan_hash, at=r.at) for r in rows]

    def void_approvals(self, migration_id: int) -> list[str]:
        """Remove the migration's approvals (their users may approve again); return who had
        approved. The audit trail keeps every approval given."""
        with self._tx() as conn:
            where = (approvals.c.migration_id == migration_id, approvals.c.decision == "approve")
            users = [r.user_id for r in conn.execute(select(approvals.c.user_id).where(*where))]
            conn.execute(delete(approvals).where(*where))
            return users

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
    ) -> Migration:
        """Record an approval or rejection, and apply ``event`` in the same transaction."""
        try:
            return self._record_decision(
                migration_id, user, decision, plan_hash, now, reason, event
            )
        except IntegrityError:  # a concurrent click by the same user won the race
            raise Refused("you already decided on this migration; nothing changed") from None

    def _record_decision(
        self,
        migration_id: int,
        user: str,
        decision: str,
        plan_hash: str,
        now: datetime,
        reason: str | None,
        event: Event | None,
    ) -> Migration:
        with self._tx() as conn:
            earlier = conn.execute(
                select(approvals.c.decision).where(
                    approvals.c.migration_id == migration_id, approvals.c.user_id == user
                )
            ).scalar()
            if earlier is not None:
                raise Refused(f"you already chose {earlier} on this migration; nothing changed")
            conn.execute(
                insert(approvals).values(
                    migration_id=migration_id,
                    user_id=user,
                    decision=decision,
                    plan_hash=plan_hash,
                    reason=reason,
                    at=now,
                )
            )
            detail = {"plan_hash": plan_hash, **({"reason": reason} if reason else {})}
            if event is None:
                self._audit(conn, migration_id, user, decision, detail, now)
                return self._get(conn, migration_id)
            # one action, one audit row: the transition's row carries the decision's detail
            return self._transition(conn, migration_id, event, user, now, detail, {})

    # -- steps ------------------------------------------------------------------------------

    def step_started(
        self, migration_id: int, phase: str, index: int, name: str, kind: str, now: datetime
    ) -> None:
        """Record that a step began."""
        with self._tx() as conn:
            conn.execute(
                insert(step_runs).values(
                    migration_id=migration_id,
                    phase=phase,
                    step_index=index,
                    name=name,
                    kind=kind,
                    state="running",
                    rows=0,
                    started_at=now,
                )
            )
            conn.execute(
                update(migrations)
                .where(migrations.c.id == migration_id)
                .values(current_step=index, updated_at=now)
            )
            self._audit(
                conn, migration_id, "bot", "step-start", {"phase": phase, "step": name}, now
            )

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
    ) -> None:
        """Record a step's outcome on its latest run."""
        with self._tx() as conn:
            latest = (
                select(func.max(step_runs.c.id))
                .where(
                    step_runs.c.migration_id == migration_id,
                    step_runs.c.phase == phase,
                    step_runs.c.step_index == index,
                )
                .scalar_subquery()
            )
            conn.execute(
                update(step_runs)
                .where(step_runs.c.id == latest)
                .values(state=state, rows=rows, detail=detail, finished_at=now)
            )
            audit = {"phase": phase, "step_index": index, "state": state, "rows": rows}
            if detail:
                audit["detail"] = detail
            self._audit(conn, migration_id, "bot", "step-" + state, audit, now)

    def step_rows(self, migration_id: int, phase: str, index: int, rows: int) -> None:
        """Update the row count of a step's latest run while it is still running."""
        with self._tx() as conn:
            latest = (
                select(func.max(step_runs.c.id))
                .where(
                    step_runs.c.migration_id == migration_id,
                    step_runs.c.phase == phase,
                    step_runs.c.step_index == index,
                )
                .scalar_subquery()
            )
            conn.execute(
                update(step_runs)
                .where(step_runs.c.id == latest, step_runs.c.state == "running")
                .values(rows=rows)
            )

    def step_runs(self, migration_id: int, phase: str | None = None) -> list[StepRun]:
        """The step runs of a migration, in order."""
        with self._tx() as conn:
            query = select(step_runs).where(step_runs.c.migration_id == migration_id)
            if phase is not None:
                query = query.where(step_runs.c.phase == phase)
            rows = conn.execute(query.order_by(step_runs.c.id))
            return [
                StepRun(
                    phase=r.phase,
                    step_index=r.step_index,
                    name=r.name,
                    kind=r.kind,
                    state=r.state,
                    rows=r.rows,
                    detail=r.detail,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                )
                for r in rows
            ]

    def achieved_rates(self, target: str, runbook: str) -> tuple[dict[str, float], float | None]:
        """Rows per second achieved on ``target`` by earlier runs: per step of ``runbook``
        (by step name), and over every batch or parallel step of any runbook (None if none
        ran). Read from the latest 500 succeeded step runs that wrote rows."""
        with self._tx() as conn:
            rows = conn.execute(
                select(
                    migrations.c.runbook,
                    step_runs.c.name,
                    step_runs.c.kind,
                    step_runs.c.rows,
                    step_runs.c.started_at,
                    step_runs.c.finished_at,
                )
                .join(migrations, migrations.c.id == step_runs.c.migration_id)
                .where(
                    migrations.c.target == target,
                    step_runs.c.phase == "run",
                    step_runs.c.rows > 0,
                    step_runs.c.finished_at.is_not(None),
                    step_runs.c.state.in_(["succeeded", "stopped"]),
                )
                .order_by(step_runs.c.id.desc())
                .limit(500)
            ).all()
        per_step: dict[str, list[float]] = {}
        overall = [0.0, 0.0]
        for r in rows:
            seconds = max((r.finished_at - r.started_at).total_seconds(), 0.001)
            if r.runbook == runbook:
                tally = per_step.setdefault(r.name, [0.0, 0.0])
                tally[0] += r.rows
                tally[1] += seconds
            if r.kind in ("batch", "parallel"):
                overall[0] += r.rows
                overall[1] += seconds
        rates = {name: t[0] / t[1] for name, t in per_step.items()}
        return rates, (overall[0] / overall[1] if overall[1] else None)

    def scheduled(self, target: str | None = None) -> list[Migration]:
        """Approved or paused migrations with a due window (on ``target``), by due time."""
        with self._tx() as conn:
            query = select(migrations).where(
                migrations.c.due_at.is_not(None),
                migrations.c.state.in_([State.APPROVED.value, State.PAUSED.value]),
            )
            if target is not None:
                query = query.where(migrations.c.target == target)
            rows = conn.execute(query.order_by(migrations.c.due_at, migrations.c.id))
            return [_migration(r) for r in rows]

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        migration_id: int | None,
        actor: str,
        action: str,
        detail: dict[str, Any],
        now: datetime,
    ) -> None:
        """Append one entry to the audit log."""
        with self._tx() as conn:
            self._audit(conn, migration_id, actor, action, detail, now)

    def _audit(
        self,
        conn: Connection,
        migration_id: int | None,
        actor: str,
        action: str,
        detail: dict[str, Any],
        now: datetime,
    ) -> None:
        conn.execute(
            insert(audit_log).values(
                migration_id=migration_id, actor=actor, action=action, detail=detail, at=now
            )
        )

    def audit_trail(self, migration_id: int) -> list[AuditEntry]:
        """The audit entries of one migration, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.migration_id == migration_id)
                .order_by(audit_log.c.id)
            )
            return [
                AuditEntry(r.migration_id, r.actor, r.action, dict(r.detail), r.at) for r in rows
            ]
