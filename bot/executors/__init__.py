"""How each kind of step runs: one executor per kind, registered with ``@executes(PlannedX)``
in a module of this package, and given one StepContext.

Database work runs in threads; commands run as subprocesses awaited on the event loop. An
executor returns a StepOutcome or raises; ``run`` turns any error into a StepFailed. Every
module of the package is imported here, so a new kind's module registers itself.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.targets.target import Target, error_message
from bot.domain.control import Control, StepOutcome
from bot.domain.planned import PlannedStep
from bot.domain.ports import Clock, Store
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration
from bot.errors import TargetUnavailable
from bot.executors.boundary import step_boundary
from bot.executors.context import StepContext
from bot.executors.registry import executor_for

__all__ = ["Control", "Executors", "StepContext", "StepOutcome", "run"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


async def run(ctx: StepContext[Any]) -> StepOutcome:
    """Run ``ctx.step`` with the executor of its kind; whatever it raises comes out as its
    StepFailed (see boundary.py)."""
    with step_boundary(ctx):
        return await executor_for(ctx.step.kind)(ctx)


class Executors:
    """The StepRunner port: runs one step of a migration on its target database, giving its
    kind's executor the step's context."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        targets: Mapping[str, Target],
        *,
        backup_dir: Path,
        runbooks_dir: Path,
    ) -> None:
        self.store = store
        self.clock = clock
        self.targets = targets
        self.backup_dir = backup_dir
        self.runbooks_dir = runbooks_dir

    def committed_steps(self, m: Migration) -> set[str]:
        """The steps of ``m`` already committed on its target (blocks; call it in a thread).
        Raises TargetUnavailable when the target cannot be reached."""
        target = self._target(m)
        try:
            return target.completed_steps(m.run_key)
        except SQLAlchemyError as exc:
            raise TargetUnavailable(f"cannot reach {target.name}: {error_message(exc)}") from exc

    async def run(
        self, m: Migration, step: PlannedStep, control: Control, live: LiveProgress
    ) -> StepOutcome:
        """Run ``step`` of ``m`` on its target. The steps of a rollback bind ``:migration_id``
        to the run they undo, so they find the rows it journalled."""
        key = m.run_key
        if m.rollback_of is not None:
            key = (await asyncio.to_thread(self.store.get, m.rollback_of)).run_key
        return await run(self.context(m, step, control, live, journal_key=key))

    def context(
        self,
        m: Migration,
        step: PlannedStep,
        control: Control,
        live: LiveProgress,
        *,
        journal_key: str | None = None,
    ) -> StepContext[PlannedStep]:
        """Everything the executor of ``step`` may use; ``:migration_id`` is bound to
        ``journal_key`` (by default the migration's own run key)."""
        return StepContext(
            migration=m,
            step=step,
            target=self._target(m),
            control=control,
            live=live,
            params={**m.plan.params, "migration_id": journal_key or m.run_key},
            clock=self.clock,
            store=self.store,
            backup_dir=self.backup_dir,
            runbooks_dir=self.runbooks_dir,
        )

    def _target(self, m: Migration) -> Target:
        if m.target not in self.targets:
            raise TargetUnavailable(f"target {m.target} is no longer configured")
        return self.targets[m.target]
