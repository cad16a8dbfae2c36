"""How each kind of step runs: one executor per kind, registered with ``@executes(PlannedX)``
in a module of this package, and given one StepContext.

Database work runs in threads; commands run as subprocesses awaited on the event loop. An
executor returns a StepOutcome or raises; ``run`` turns any error into a StepFailed. Every
module of the package is imported here, so a new kind's module registers itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from bot.adapters.targets.target import Target
from bot.domain.planned import PlannedStep
from bot.domain.ports import Clock, Store
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration
from bot.executors.boundary import step_boundary
from bot.executors.context import Control, StepContext, StepOutcome
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
    """Runs one step of a migration: gives its kind's executor the step's context."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        backup_dir: Path,
        runbooks_dir: Path,
    ) -> None:
        self.store = store
        self.clock = clock
        self.backup_dir = backup_dir
        self.runbooks_dir = runbooks_dir

    async def run(
        self, m: Migration, step: PlannedStep, target: Target, control: Control, live: LiveProgress
    ) -> StepOutcome:
        """Run ``step`` of ``m`` on ``target``."""
        return await run(self.context(m, step, target, control, live))

    def context(
        self, m: Migration, step: PlannedStep, target: Target, control: Control, live: LiveProgress
    ) -> StepContext[PlannedStep]:
        """Everything the executor of ``step`` may use."""
        return StepContext(
            migration=m,
            step=step,
            target=target,
            control=control,
            live=live,
            params={**m.plan.params, "migration_id": m.run_key},
            clock=self.clock,
            store=self.store,
            backup_dir=self.backup_dir,
            runbooks_dir=self.runbooks_dir,
        )
