"""The step engine: runs an approved migration's steps off the event loop.

Each step commits on the target together with its checkpoint row, so after a restart the run
resumes after the last committed step. Cancellation is honoured at step boundaries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.adapters.store import Migration, Store
from bot.adapters.targets.target import Target
from bot.domain.lifecycle import Event, State
from bot.domain.plan import PlannedStep
from bot.domain.ports import Clock, Notifier
from bot.errors import StepFailed

logger = logging.getLogger(__name__)


class Engine:
    """Starts and tracks one asyncio task per running migration."""

    def __init__(
        self, store: Store, notifier: Notifier, clock: Clock, on_change: Callable[[], None]
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.on_change = on_change
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def is_running(self, migration_id: int) -> bool:
        """Whether this process is running the migration now."""
        task = self._tasks.get(migration_id)
        return task is not None and not task.done()

    def start(self, migration_id: int, target: Target) -> None:
        """Move an approved migration to running and run it in the background."""
        if not self.is_running(migration_id):
            self._spawn(migration_id, target, resume=False)

    def resume(self, migration_id: int, target: Target) -> None:
        """Continue a run that a restart interrupted, from its checkpoints."""
        if not self.is_running(migration_id):
            self._spawn(migration_id, target, resume=True)

    def _spawn(self, migration_id: int, target: Target, *, resume: bool) -> None:
        task = asyncio.create_task(self._run(migration_id, target, resume), name=f"m{migration_id}")
        self._tasks[migration_id] = task

    async def wait_idle(self) -> None:
        """Wait for every running task to finish."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, migration_id: int, target: Target, resume: bool) -> None:
        try:
            if not resume:
                await asyncio.to_thread(self._begin, migration_id)
            await self._steps(migration_id, target)
        except Exception:  # the record must never stay "running" without a note
            logger.exception("migration %s: engine error", migration_id)
            await asyncio.to_thread(
                self._finish, migration_id, Event.FAIL, "internal error in the bot; see its log"
            )
        finally:
            self.on_change()

    def _begin(self, migration_id: int) -> None:
        now = self.clock()
        with self.store.transaction():
            m = self.store.transition(
                migration_id, Event.START, actor="bot", now=now, started_at=now
            )
            self.notifier.progress(m, [], now)
        logger.info("migration %s: started", migration_id)

    async def _steps(self, migration_id: int, target: Target) -> None:
        m = await asyncio.to_thread(self.store.get, migration_id)
        try:
            committed = await asyncio.to_thread(target.completed_steps, m.run_key)
        except SQLAlchemyError as exc:
            await asyncio.to_thread(
                self._finish, m.id, Event.FAIL, f"cannot reach {target.name}: {_db_message(exc)}"
            )
            return
        params = {**m.plan.params, "migration_id": m.run_key}
        for step in m.plan.steps:
            m = await asyncio.to_thread(self.store.get, migration_id)
            if m.cancel_requested:
                await asyncio.to_thread(self._finish, m.id, Event.STOP, None)
                return
            if step.name in committed:
                await asyncio.to_thread(self._skip, m, step)
                continue
            await asyncio.to_thread(self._started, m, step)
            try:
                rows, detail = await asyncio.to_thread(self._execute, target, m, step, params)
            except (StepFailed, SQLAlchemyError, OSError) as exc:
                message = exc.message if isinstance(exc, StepFailed) else _db_message(exc)
                await asyncio.to_thread(self._failed, m, step, message)
                return
            await asyncio.to_thread(self._succeeded, m, step, rows, detail)
        m = await asyncio.to_thread(self.store.get, migration_id)
        await asyncio.to_thread(self._finish, m.id, Event.SUCCEED, None)

    def _execute(
        self, target: Target, m: Migration, step: PlannedStep, params: dict[str, Any]
    ) -> tuple[int, str | None]:
        if step.kind == "check":
            result = target.check(step.sql, params, expect=step.expect, equals_sql=step.equals_sql)
            if not result.passed:
                raise StepFailed(
                    step.name, f"check failed: got {result.value!r}, expected {result.expected}"
                )
            return 0, f"value {result.value!r} (expected {result.expected})"
        rows = target.run_sql(
            step.sql,
            params,
            run_key=m.run_key,
            step=step.name,
            timeout=step.timeout,
            now=self.clock(),
        )
        return rows, None

    def _started(self, m: Migration, step: PlannedStep) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_started(m.id, "run", step.index, step.name, step.kind, now)
            self.notifier.progress(self.store.get(m.id), self.store.step_runs(m.id), now)
        logger.info("migration %s: step %s (%s) started", m.id, step.index, step.name)
        self.on_change()

    def _succeeded(self, m: Migration, step: PlannedStep, rows: int, detail: str | None) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_finished(
                m.id, "run", step.index, state="succeeded", rows=rows, detail=detail, now=now
            )
            self.notifier.progress(self.store.get(m.id), self.store.step_runs(m.id), now)
        logger.info("migration %s: step %s succeeded, %s rows", m.id, step.index, rows)
        self.on_change()

    def _skip(self, m: Migration, step: PlannedStep) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_started(m.id, "run", step.index, step.name, step.kind, now)
            self.store.step_finished(
                m.id,
                "run",
                step.index,
                state="succeeded",
                rows=0,
                detail="already committed before a restart; not run again",
                now=now,
            )
        logger.info("migration %s: step %s was already committed", m.id, step.index)

    def _failed(self, m: Migration, step: PlannedStep, message: str) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_finished(
                m.id, "run", step.index, state="failed", rows=0, detail=message, now=now
            )
            self._finish(m.id, Event.FAIL, f"step {step.index} ({step.name}): {message}")
        logger.warning("migration %s: step %s failed: %s", m.id, step.index, message)

    def _finish(self, migration_id: int, event: Event, error: str | None) -> None:
        now = self.clock()
        with self.store.transaction():
            m = self.store.get(migration_id)
            if m.state is State.RUNNING and event is Event.STOP:
                event = Event.FAIL
            m = self.store.transition(
                migration_id, event, actor="bot", now=now, finished_at=now, error=error
            )
            runs = self.store.step_runs(migration_id)
            self.notifier.progress(m, runs, now)
            self.notifier.outcome(m, runs, now)
        logger.info("migration %s: %s", migration_id, m.state.value)


def _db_message(exc: BaseException) -> str:
    """The database's own message, without SQLAlchemy's SQL echo and parameters."""
    text = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    text = text.split("\n[SQL:")[0].split("\n(Background on this error")[0]
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", text).strip()[:1500]
