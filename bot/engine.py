"""The step engine: runs an approved migration's steps off the event loop.

Every step commits on the target together with its checkpoint, so after a restart the run
resumes after the last committed step (and batch). Cancel and pause act at the next batch
or step boundary; a paused run holds no transaction and no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from bot.domain import paging
from bot.domain.control import Control, StepOutcome
from bot.domain.lifecycle import Event, State
from bot.domain.plan import PlannedStep
from bot.domain.ports import Clock, NoPager, Notifier, Pager, StepRunner, Store, Watcher
from bot.domain.progress import LiveProgress, earlier_end, skip_detail
from bot.domain.records import Migration, StepRun
from bot.domain.rollback import finished_notice
from bot.errors import InvalidTransition, StateUnavailable, StepFailed, TargetUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Engine:
    """Starts and tracks one asyncio task per running migration."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        on_change: Callable[[], None],
        runner: StepRunner,
        *,
        progress_seconds: float = 2.0,
        state_retry_seconds: float = 0.5,
        pager: Pager | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.pager: Pager = pager or NoPager()
        self.clock = clock
        self.on_change = on_change
        self.progress_seconds = progress_seconds
        self.state_retry_seconds = state_retry_seconds
        self.runner = runner
        self.watcher = watcher  # the blocking monitor, if any: one watch per active run
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._controls: dict[int, Control] = {}
        self._live: dict[int, LiveProgress] = {}

    def is_running(self, migration_id: int) -> bool:
        """Whether this process is running the migration now."""
        task = self._tasks.get(migration_id)
        return task is not None and not task.done()

    def signal(self, migration_id: int, *, cancel: bool = False, pause: bool = False) -> None:
        """Ask a running migration to stop (cancel) or pause at its next boundary."""
        control = self._controls.get(migration_id)
        if control is not None:
            if cancel:
                control.cancel.set()
            if pause:
                control.pause.set()

    def throttle(self, migration_id: int, level: float | None) -> bool:
        """Slow a running migration by hand to ``1 - level`` of its speed (None: lift the
        manual throttle); False when it is not running here. The level is the run's record
        (``manual_throttle``), written by the caller: a run that starts or resumes later
        recalls it from there."""
        control = self._controls.get(migration_id)
        if control is None or not self.is_running(migration_id):
            return False
        control.throttle.set_by_hand(level)
        return True

    def live(self, migration_id: int) -> LiveProgress | None:
        """The running step's live progress, if the migration is running here."""
        return self._live.get(migration_id) if self.is_running(migration_id) else None

    def start(self, migration_id: int) -> None:
        """Move an approved migration to running and run it in the background."""
        if not self.is_running(migration_id):
            self._spawn(migration_id, begin=True)

    def resume(self, migration_id: int, *, restarted: bool = False) -> None:
        """Continue a run from its checkpoints (after a pause, a failure, or a restart of
        the bot when ``restarted``)."""
        if not self.is_running(migration_id):
            self._spawn(migration_id, begin=False, restarted=restarted)

    def _spawn(self, migration_id: int, *, begin: bool, restarted: bool = False) -> None:
        self._controls[migration_id] = Control()
        run = self._run(migration_id, begin, restarted)
        task = asyncio.create_task(run, name=f"m{migration_id}")
        self._tasks[migration_id] = task

    async def wait_idle(self) -> None:
        """Wait for every running task to finish."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, migration_id: int, begin: bool, restarted: bool) -> None:
        ticker = asyncio.create_task(self._tick(migration_id))
        watch: asyncio.Task[None] | None = None
        try:
            if begin:
                try:
                    await self._write(self._begin, migration_id)
                except InvalidTransition as exc:  # cancelled (or expired) since it was due
                    logger.info("migration %s: not started: %s", migration_id, exc)
                    return
            if self.watcher is not None:
                control = self._controls[migration_id]
                live = functools.partial(self._live.get, migration_id)
                watching = self.watcher.watch(migration_id, control, self.pager, live)
                watch = asyncio.create_task(watching, name=f"m{migration_id}-watch")
            await self._steps(migration_id, restarted)
        except Exception:  # the record must never stay "running" without a note
            logger.exception("migration %s: engine error", migration_id)
            await self._write(
                self._finish, migration_id, Event.FAIL, "internal error in the bot; see its log"
            )
        finally:
            for task in (ticker, watch):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if watch is not None:
                try:
                    await watch  # it closes the run's open blocking episodes
                except asyncio.CancelledError:
                    pass
                except Exception:
                    logger.exception("migration %s: the blocking monitor failed", migration_id)
            self._live.pop(migration_id, None)
            self.on_change()

    async def _tick(self, migration_id: int) -> None:
        """Refresh the progress message while a step runs (batches only update memory)."""
        while True:
            await asyncio.sleep(self.progress_seconds)
            live = self._live.get(migration_id)
            if live is not None:
                try:
                    await asyncio.to_thread(self._publish, migration_id, live)
                except StateUnavailable:  # the store logs the outage; progress can wait
                    continue
                self.on_change()

    async def _write(self, write: Callable[..., T], *args: Any) -> T:
        """Run a state write (or read) in a thread. While the state database is unreachable,
        try again with a growing pause: the run holds at this boundary, and its record stays
        true (no step run is left open) once the database is back."""
        pause = self.state_retry_seconds
        while True:
            try:
                return await asyncio.to_thread(write, *args)
            except StateUnavailable:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10 * self.state_retry_seconds)

    def _publish(self, migration_id: int, live: LiveProgress | None) -> None:
        now = self.clock()
        with self.store.transaction():
            m = self.store.get(migration_id)
            if live is not None:
                self.store.step_rows(migration_id, "run", live.step_index, live.rows)
            self.notifier.progress(m, self.store.step_runs(migration_id), now, live)

    def _begin(self, migration_id: int) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.lock(migration_id)  # one change at a time, as the service's decisions
            m = self.store.transition(
                migration_id, Event.START, actor="bot", now=now, started_at=now
            )
            self.notifier.progress(m, [], now, None)
            self.pager.change(m, f"#{m.id} {m.runbook} started on {m.target}", now)
        logger.info("migration %s: started", migration_id)

    async def _steps(self, migration_id: int, restarted: bool) -> None:
        m = await self._write(self.store.get, migration_id)
        control = self._controls[migration_id]
        if m.cancel_requested:
            control.cancel.set()
        if m.pause_requested:
            control.pause.set()
        control.throttle.recall(m.manual_throttle)  # it holds across pauses and restarts
        try:
            committed = await asyncio.to_thread(self.runner.committed_steps, m)
        except TargetUnavailable as exc:
            await self._write(self._finish, m.id, Event.FAIL, str(exc))
            return
        why = ""
        if committed:
            trail = await self._write(self.store.audit_trail, m.id)
            why = earlier_end([a.action for a in trail], restarted=restarted)
        for step in m.plan.steps:
            if control.stopping():
                await self._write(self._stop, m.id, control)
                return
            if step.name in committed:
                await self._write(self._skip, m, step, why)
                continue
            live = LiveProgress(step.index, step.name, step.kind, started_at=self.clock())
            self._live[m.id] = live
            await self._write(self._started, m, step)
            self.on_change()  # on the event loop: the outbox's wake-up is not thread-safe
            try:
                outcome = await self.runner.run(m, step, control, live)
            except StepFailed as exc:  # the executors map every error of a step to this
                await self._write(self._failed, m, step, live.rows, exc.message)
                return
            await self._write(self._ended, m, step, outcome)
            self.on_change()
            if not outcome.finished:
                await self._write(self._stop, m.id, control)
                return
        await self._write(self._finish, m.id, Event.SUCCEED, None)

    def _started(self, m: Migration, step: PlannedStep) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_started(m.id, "run", step.index, step.name, step.kind, now)
            self.notifier.progress(
                self.store.get(m.id), self.store.step_runs(m.id), now, self._live.get(m.id)
            )
        logger.info("migration %s: step %s (%s) started", m.id, step.index, step.name)

    def _ended(self, m: Migration, step: PlannedStep, outcome: StepOutcome) -> None:
        now = self.clock()
        state = "succeeded" if outcome.finished else "stopped"
        with self.store.transaction():
            self.store.step_finished(
                m.id,
                "run",
                step.index,
                state=state,
                rows=outcome.rows,
                detail=outcome.detail,
                now=now,
            )
            self.notifier.progress(self.store.get(m.id), self.store.step_runs(m.id), now, None)
        logger.info("migration %s: step %s %s, %s rows", m.id, step.index, state, outcome.rows)

    def _skip(self, m: Migration, step: PlannedStep, why: str) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_started(m.id, "run", step.index, step.name, step.kind, now)
            self.store.step_finished(
                m.id,
                "run",
                step.index,
                state="succeeded",
                rows=0,
                detail=skip_detail(why),
                now=now,
            )
        logger.info("migration %s: step %s was already committed", m.id, step.index)

    def _failed(self, m: Migration, step: PlannedStep, rows: int, message: str) -> None:
        now = self.clock()
        with self.store.transaction():
            self.store.step_finished(
                m.id, "run", step.index, state="failed", rows=rows, detail=message, now=now
            )
            reason = paging.failure_reason(m, step.index, step.name, step.kind, message)
            error = f"step {step.index} ({step.name}): {message}"
            self._finish(m.id, Event.FAIL, error, page=reason)
        logger.warning("migration %s: step %s failed: %s", m.id, step.index, message)

    def _stop(self, migration_id: int, control: Control) -> None:
        """Stop at a boundary: cancelled if cancel was asked, else paused."""
        now = self.clock()
        with self.store.transaction():
            if control.cancel.is_set() or self.store.lock(migration_id).cancel_requested:
                self._finish(migration_id, Event.STOP, None)
                return
            m = self.store.transition(
                migration_id, Event.PAUSE, actor="bot", now=now, pause_requested=False
            )
            self.notifier.progress(m, self.store.step_runs(migration_id), now, None)
        logger.info("migration %s: paused at a boundary", migration_id)

    def _page(self, m: Migration, runs: list[StepRun], page: str | None, now: datetime) -> None:
        """Page a failed run; resolve the incident of a run that succeeded (resumed or not),
        was cancelled, or was undone by this rollback; record the change's end."""
        if m.state is State.FAILED:
            summary = page or paging.run_failed(m, m.error)
            self.pager.trigger(m, summary, paging.details(m, runs), now)
        elif m.state is State.SUCCEEDED:
            self.pager.resolve(m, f"#{m.id} succeeded", now)
            if m.rollback_of is not None:
                original = self.store.get(m.rollback_of)
                self.pager.resolve(original, f"#{original.id} was rolled back by #{m.id}", now)
        elif m.state is State.CANCELLED:
            self.pager.resolve(m, f"#{m.id} was cancelled", now)
        self.pager.change(m, f"#{m.id} {m.runbook} on {m.target}: {m.state.value}", now)

    def _finish(
        self, migration_id: int, event: Event, error: str | None, *, page: str | None = None
    ) -> None:
        """End the run with ``event``; a failure pages (``page`` is its summary, if known)."""
        now = self.clock()
        with self.store.transaction():
            m = self.store.lock(migration_id)  # a cancel may land at the same moment
            if m.state is State.RUNNING and event is Event.STOP:
                event = Event.FAIL
            m = self.store.transition(
                migration_id, event, actor="bot", now=now, finished_at=now, error=error
            )
            runs = self.store.step_runs(migration_id)
            self.notifier.progress(m, runs, now, None)
            self.notifier.outcome(m, runs, now)
            if m.rollback_of is not None:  # the run it undoes hears how it went
                original = self.store.get(m.rollback_of)
                self.notifier.notice(original, finished_notice(m), now)
            self._page(m, runs, page, now)
        logger.info("migration %s: %s", migration_id, m.state.value)
