"""The keyset batch runner: a batch step as many short transactions, each with its checkpoint.

Each batch is one transaction that locks the step's checkpoint row, reads it, finds the next
key boundary, applies the change to the keys in (last, next] and advances the checkpoint. So
a batch is applied exactly once even if the process dies at any instant, and a second runner
on the same checkpoint (or a dying one whose COMMIT is still in flight) is serialised behind
the lock. Nothing is held between batches: a paused run holds no lock. Transient errors
(deadlock, serialization failure, lock timeout, lost connection) retry the same batch.

A journalled update writes the keys it changes into the journal in that same transaction
(batch_sql.py), so a batch that did not commit journals nothing, and the rows journalled are
exactly the rows moved.

Every function blocks: the engine calls them in a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from bot.adapters.targets.batch_hooks import (
    NONE_SKIPPED,
    Hook,
    Skipped,
    apply_hook,
    hook_digest,
    load_hook,
    prepare_skipped,
    read_skipped,
)
from bot.adapters.targets.batch_sql import (
    FIRST_KEY,
    FROM,
    LAST,
    NEXT,
    RESERVED_PREFIX,
    SIZE,
    BatchSql,
    batch_sql,
    runbook_binds,
)
from bot.adapters.targets.retries import retry_transient
from bot.adapters.targets.target import Target
from bot.domain.batching import next_size
from bot.domain.blocking import Throttle
from bot.domain.plan import BatchPlan
from bot.domain.sqltext import bound_names

__all__ = [
    "BatchJob",
    "BatchReport",
    "BatchResult",
    "BatchSql",
    "Hook",
    "batch_sql",
    "hook_digest",
    "load_hook",
    "remaining",
    "run_batches",
]

logger = logging.getLogger(__name__)

ISOLATION_LEVELS = frozenset({"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"})


@dataclass(frozen=True)
class BatchJob:
    """One batch step (or one branch of a parallel step) to run on a target."""

    run_key: str  # checkpoint identity: (migration_id=run_key, step, branch)
    step: str
    branch: str  # "" for a plain batch step; the branch's key, as text
    plan: BatchPlan
    params: dict[str, Any]  # runbook parameters + migration_id (+ the branch parameter)
    timeout: float  # per batch transaction, seconds
    isolation: str | None = None  # None: the engine's default; else e.g. "REPEATABLE READ"

    def __post_init__(self) -> None:
        reserved = sorted(k for k in self.params if k.startswith(RESERVED_PREFIX))
        if reserved:
            raise ValueError(
                f"parameter names starting with {RESERVED_PREFIX!r} are reserved for the batch "
                f"runner; rename {', '.join(reserved)}"
            )
        if self.isolation is not None and self.isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"isolation {self.isolation!r} is not one of {', '.join(sorted(ISOLATION_LEVELS))}"
            )
        if not self.timeout > 0:
            raise ValueError(f"batch timeout must be positive, got {self.timeout!r}")


@dataclass(frozen=True)
class BatchReport:
    """One committed batch. ``rows_done``/``batches`` are the checkpoint's running totals;
    ``retries`` counts this batch's retries only."""

    branch: str
    rows: int
    rows_done: int
    batches: int
    last_key: int | None
    seconds: float
    next_size: int
    retries: int


@dataclass(frozen=True)
class BatchResult:
    """How a run ended: ``rows_done``/``batches`` are the checkpoint's totals (earlier runs
    included); ``finished`` is False when ``should_stop`` stopped it at a batch boundary."""

    rows_done: int
    batches: int
    finished: bool
    longest_batch_seconds: float
    retries: int
    skipped: Skipped = NONE_SKIPPED  # rows the hook left unchanged for a reason, earlier runs too


@dataclass(frozen=True)
class _Checkpoint:
    last_key: int | None
    rows_done: int
    batches: int
    done: bool


@dataclass(frozen=True)
class _Batch:
    checkpoint: _Checkpoint  # after the batch
    rows: int  # rows this batch changed; 0 and checkpoint.done when nothing was left


def run_batches(
    target: Target,
    job: BatchJob,
    *,
    should_stop: Callable[[], bool],
    on_batch: Callable[[BatchReport], None],
    now: Callable[[], datetime],
    hook: Hook | None = None,
    throttle: Throttle | None = None,
) -> BatchResult:
    """Run ``job`` from its checkpoint until no matching row is left or ``should_stop()``
    is true at a batch boundary. Non-transient database errors propagate unchanged.

    With a ``throttle`` (shared with the blocking monitor), each batch transaction's session
    is registered as the run's own while it is open, and a throttled run's batches are
    smaller than their adaptive size and followed by a wait (cut short by ``should_stop``)."""
    runner = _Runner(target, job, now, hook, throttle)
    state = runner.start()
    size, retries = job.plan.settings.size, 0
    while not state.done:
        if should_stop():
            done = (state.rows_done, state.batches)
            return BatchResult(*done, False, runner.longest, retries, runner.skipped())
        applied = throttle.size(size) if throttle else size
        batch, seconds, attempts = runner.batch_with_retries(applied)
        state, retries = batch.checkpoint, retries + attempts
        if state.done:
            break
        if applied == size:  # a throttled batch says nothing of the size the budget allows
            size = next_size(size, seconds, job.plan.settings)
        done, last = (state.rows_done, state.batches), state.last_key
        shown = throttle.size(size) if throttle else size
        on_batch(BatchReport(job.branch, batch.rows, *done, last, seconds, shown, attempts))
        if throttle:
            _wait(throttle.wait_after(seconds), should_stop)
    done = (state.rows_done, state.batches)
    return BatchResult(*done, True, runner.longest, retries, runner.skipped())


def _wait(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Wait ``seconds`` between throttled batches, in short steps, unless the run stops."""
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.05, left))


def remaining(target: Target, job: BatchJob) -> tuple[int, int]:
    """The rows the checkpoint says were committed (by earlier executions of the run), and
    the matching rows after it (0 once it is done): the figures for progress."""
    statements = batch_sql(target.dialect, job.plan)
    target.prepare()
    target.refresh_statistics(job.plan.table)  # the count is planned on them too
    with target.engine.connect() as conn:
        checkpoint = _read(conn, statements, job)
        done = checkpoint.rows_done if checkpoint else 0
        if checkpoint is not None and checkpoint.done:
            return done, 0
        last = checkpoint.last_key if checkpoint else None
        params = {**_runbook_params(job, statements.remaining), LAST: last}
        return done, int(conn.execute(text(statements.remaining), params).scalar() or 0)


class _Runner:
    """The statements and connections of one run; one transaction per batch."""

    def __init__(
        self,
        target: Target,
        job: BatchJob,
        now: Callable[[], datetime],
        hook: Hook | None,
        throttle: Throttle | None = None,
    ):
        self.job, self.now, self.hook, self.throttle = job, now, hook, throttle
        self.longest = 0.0  # the longest batch transaction so far, failed attempts included
        self.sql = batch_sql(target.dialect, job.plan)
        if self.sql.kind == "hook" and hook is None:
            raise ValueError(
                f"step {job.step!r} transforms rows with {job.plan.hook}: load it first"
            )
        missing = sorted(runbook_binds(self.sql) - set(job.params))
        if missing:
            names = ", ".join(f":{m}" for m in missing)
            raise ValueError(f"step {job.step!r} uses {names}, which the job's params lack")
        self.target = target
        self.where_params = _runbook_params(job, self.sql.next_key)
        self.change_params = _runbook_params(job, f"{self.sql.change}\n{self.sql.journal or ''}")

    def start(self) -> _Checkpoint:
        """Create the checkpoint row unless it exists (in its own transaction) and read it."""
        self.target.prepare()
        self.target.refresh_statistics(self.job.plan.table)
        if self.sql.kind == "hook":
            prepare_skipped(self.target.engine)
        try:
            with self.target.transaction(timeout=self.job.timeout) as conn:
                conn.execute(text(self.sql.checkpoint_create), self._key(done=False))
        except sa_exc.IntegrityError:
            pass  # created meanwhile by a runner whose commit was still in flight
        with self.target.engine.connect() as conn:
            checkpoint = _read(conn, self.sql, self.job)
        if checkpoint is None:
            raise RuntimeError(f"checkpoint of {self._where()} was not created")
        return checkpoint

    def batch_with_retries(self, size: int) -> tuple[_Batch, float, int]:
        """Run one batch, retrying it on transient errors; return it, the seconds its
        committed transaction took and how many retries it needed."""

        job = self.job

        def attempt() -> tuple[_Batch, float]:
            started = time.perf_counter()
            try:
                with (
                    self.target.transaction(timeout=job.timeout, isolation=job.isolation) as conn,
                    self._own(conn),
                ):
                    batch = self._batch(conn, size)
                return batch, time.perf_counter() - started  # the commit included
            finally:
                self.longest = max(self.longest, time.perf_counter() - started)

        (batch, seconds), retries = retry_transient(
            attempt,
            self.target.dialect,
            retries=self.job.plan.retries,
            where=self._where(),
            log=logger,
        )
        return batch, seconds, retries

    def _own(self, conn: Connection) -> AbstractContextManager[None]:
        """While the block runs, ``conn``'s session is the run's own (for the monitor)."""
        if self.throttle is None:
            return nullcontext()
        return self.throttle.owning(self.target.dialect.session_id(conn))

    def _batch(self, conn: Connection, size: int) -> _Batch:
        claimed = conn.execute(text(self.sql.checkpoint_claim), self._key())
        if claimed.rowcount != 1:
            raise RuntimeError(f"checkpoint of {self._where()} vanished while running")
        before = _read(conn, self.sql, self.job)
        assert before is not None
        if before.done:
            return _Batch(before, 0)
        bounds = {**self.where_params, LAST: before.last_key, SIZE: size}
        upper = conn.execute(text(self.sql.next_key), bounds).scalar()
        if upper is None:
            conn.execute(text(self.sql.checkpoint_finish), self._key(done=True))
            return _Batch(_Checkpoint(before.last_key, before.rows_done, before.batches, True), 0)
        upper = int(upper)
        first = FIRST_KEY if before.last_key is None else before.last_key + 1
        rows = self._apply(conn, {**self.change_params, FROM: first, NEXT: upper})
        written = {**self._key(done=False), "last_key": upper, "rows": rows}
        self.target.dialect.write_checkpoint(conn, written)
        return _Batch(_Checkpoint(upper, before.rows_done + rows, before.batches + 1, False), rows)

    def _apply(self, conn: Connection, params: dict[str, Any]) -> int:
        journalled = None
        if self.sql.journal is not None:
            written = conn.execute(text(self.sql.journal), params)
            journalled = (
                int(written.scalar() or 0) if self.sql.journal_counted else written.rowcount
            )
        selected = conn.execute(text(self.sql.change), params)
        changed = selected.rowcount
        if self.sql.counted:
            changed, journalled = (int(n) for n in selected.one())
        if journalled is not None and journalled != changed:
            raise RuntimeError(
                f"{self._where()}: the batch journalled {journalled} rows but updated "
                f"{changed}; it was rolled back. Does a trigger change the rows?"
            )
        if self.sql.kind != "hook":
            return max(changed or 0, 0)
        assert self.hook is not None
        plan, run = self.job.plan, _identity(self.job)
        return apply_hook(conn, self.target.dialect, plan, self.hook, selected, run)

    def skipped(self) -> Skipped:
        """The rows the hook left unchanged for a reason in this run of the step, so far."""
        if self.sql.kind != "hook":
            return NONE_SKIPPED
        with self.target.engine.connect() as conn:
            return read_skipped(conn, _identity(self.job))

    def _key(self, *, done: bool | None = None) -> dict[str, Any]:
        moment = self.now()
        now = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
        key = {**_identity(self.job), "now": now}
        return key if done is None else {**key, "done": done}

    def _where(self) -> str:
        branch = f" branch {self.job.branch}" if self.job.branch else ""
        return f"migration {self.job.run_key} step {self.job.step}{branch}"


def _read(conn: Connection, statements: BatchSql, job: BatchJob) -> _Checkpoint | None:
    row = conn.execute(text(statements.checkpoint_read), _identity(job)).mappings().one_or_none()
    if row is None:
        return None
    last = None if row["last_key"] is None else int(row["last_key"])
    return _Checkpoint(last, int(row["rows_done"]), int(row["batches"]), bool(row["done"]))


def _identity(job: BatchJob) -> dict[str, Any]:
    return {"migration_id": job.run_key, "step": job.step, "branch": job.branch}


def _runbook_params(job: BatchJob, sql: str) -> dict[str, Any]:
    names = bound_names(sql)
    return {k: v for k, v in job.params.items() if k in names}
