"""What an executor gets (one StepContext) and gives back (a StepOutcome)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bot.adapters.targets.target import Target
from bot.domain.control import Control
from bot.domain.planned import PlannedBase
from bot.domain.ports import Clock, Store
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration

S = TypeVar("S", bound=PlannedBase, covariant=True)


@dataclass(frozen=True)
class StepContext(Generic[S]):
    """One step of one migration about to run on its target, with all an executor may use.

    ``params`` are the plan's parameters plus ``migration_id``.
    """

    migration: Migration
    step: S
    target: Target
    control: Control
    live: LiveProgress
    params: dict[str, Any]
    clock: Clock
    store: Store
    backup_dir: Path
    runbooks_dir: Path

    async def mark_done(self) -> None:
        """Record on the target that this step has committed (so a resume skips it)."""
        run_key, now = self.migration.run_key, self.clock()
        await asyncio.to_thread(self.target.mark_done, run_key, self.step.name, now)
