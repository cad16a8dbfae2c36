"""How each kind of step runs. Database work runs in threads; commands run as subprocesses
awaited on the event loop. Each returns a StepOutcome or raises StepFailed."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.adapters.commands import fill_target, run_command
from bot.adapters.store import Store
from bot.adapters.targets.batch_hooks import load_hook
from bot.adapters.targets.batches import BatchJob, BatchReport, remaining, run_batches
from bot.adapters.targets.dialect import BackupInfo
from bot.adapters.targets.target import Target, error_message, exponential_backoff
from bot.domain.planned import (
    PlannedBackup,
    PlannedBatch,
    PlannedCheck,
    PlannedCommand,
    PlannedParallel,
    PlannedSql,
    PlannedStep,
)
from bot.domain.ports import Clock
from bot.domain.progress import LiveProgress
from bot.domain.records import Migration
from bot.errors import CommandFailed, StepFailed

logger = logging.getLogger(__name__)


@dataclass
class Control:
    """Requests that a run stop at its next boundary; set from the event loop, read in threads."""

    cancel: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)

    def stopping(self) -> bool:
        """Whether the run should stop at the next batch or step boundary."""
        return self.cancel.is_set() or self.pause.is_set()


@dataclass(frozen=True)
class StepOutcome:
    """What a step did; ``finished`` is False when it stopped early at a boundary."""

    rows: int
    detail: str | None = None
    finished: bool = True


class Executors:
    """Runs one step of a migration according to its kind."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        backup_dir: Path,
        runbooks_dir: Path,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.backup_dir = backup_dir
        self.runbooks_dir = runbooks_dir
        self.backoff = backoff or exponential_backoff  # seconds before retry n (tests: 0)

    async def run(
        self, m: Migration, step: PlannedStep, target: Target, control: Control, live: LiveProgress
    ) -> StepOutcome:
        """Run ``step`` of ``m`` on ``target``."""
        params: dict[str, Any] = {**m.plan.params, "migration_id": m.run_key}
        runner = getattr(self, f"_{step.kind}")
        outcome: StepOutcome = await runner(m, step, target, control, live, params)
        return outcome

    async def _sql(self, m: Migration, step: PlannedSql, target: Target, *args: Any) -> StepOutcome:
        params = args[-1]
        rows = await asyncio.to_thread(
            target.run_sql,
            step.sql,
            params,
            run_key=m.run_key,
            step=step.name,
            timeout=step.timeout,
            now=self.clock(),
            retries=step.retries,
            backoff=self.backoff,
        )
        return StepOutcome(rows)

    async def _check(
        self, m: Migration, step: PlannedCheck, target: Target, *args: Any
    ) -> StepOutcome:
        result = await asyncio.to_thread(
            target.check, step.sql, args[-1], expect=step.expect, equals_sql=step.equals_sql
        )
        if not result.passed:
            raise StepFailed(
                step.name, f"check failed: got {result.value!r}, expected {result.expected}"
            )
        return StepOutcome(0, f"value {result.value!r} (expected {result.expected})")

    def _job(
        self,
        m: Migration,
        step: PlannedBatch | PlannedParallel,
        branch: str,
        params: dict[str, Any],
    ) -> BatchJob:
        return BatchJob(
            run_key=m.run_key,
            step=step.name,
            branch=branch,
            plan=step.batch,
            params=params,
            timeout=step.timeout,
            backoff=self.backoff,
        )

    def _hook(self, step: PlannedBatch | PlannedParallel) -> Any:
        return load_hook(self.runbooks_dir, step.batch) if step.batch.hook else None

    async def _batch(
        self,
        m: Migration,
        step: PlannedBatch,
        target: Target,
        control: Control,
        live: LiveProgress,
        params: dict[str, Any],
    ) -> StepOutcome:
        job = self._job(m, step, "", params)
        live.total = await asyncio.to_thread(remaining, target, job)
        result = await asyncio.to_thread(self._batches, target, job, control.stopping, live, step)
        if result.finished:
            await asyncio.to_thread(target.mark_done, m.run_key, step.name, self.clock())
        batches = "batch" if result.batches == 1 else "batches"
        detail = (
            f"{result.batches:,} {batches}, longest {result.longest_batch_seconds * 1000:.0f} ms"
            + (f", {result.retries} retried" if result.retries else "")
        )
        return StepOutcome(result.rows_done, detail, result.finished)

    def _batches(
        self,
        target: Target,
        job: BatchJob,
        should_stop: Callable[[], bool],
        live: LiveProgress,
        step: PlannedBatch | PlannedParallel,
    ) -> Any:
        def on_batch(report: BatchReport) -> None:
            live.add_rows(report.branch, report.rows_done)
            live.batches += 1
            live.retries += report.retries
            live.longest_batch = max(live.longest_batch, report.seconds)

        return run_batches(
            target,
            job,
            should_stop=should_stop,
            on_batch=on_batch,
            now=self.clock,
            hook=self._hook(step),
        )

    async def _parallel(
        self,
        m: Migration,
        step: PlannedParallel,
        target: Target,
        control: Control,
        live: LiveProgress,
        params: dict[str, Any],
    ) -> StepOutcome:
        param: str = step.branch_param
        keys = await asyncio.to_thread(target.keys, step.over_sql, params)
        gate = asyncio.Semaphore(step.concurrency)
        sibling_failed = threading.Event()
        failures: list[str] = []

        def stopping() -> bool:
            return control.stopping() or sibling_failed.is_set()

        async def branch(key: Any) -> bool:
            name = str(key)
            async with gate:
                if stopping():
                    live.branch(name).state = "stopped"
                    return False
                job = self._job(m, step, name, {**params, param: key})
                progress = live.branch(name)
                try:
                    progress.total = await asyncio.to_thread(remaining, target, job)
                    result = await asyncio.to_thread(
                        self._batches, target, job, stopping, live, step
                    )
                except Exception as exc:
                    sibling_failed.set()
                    progress.state = "failed"
                    failures.append(f"branch {step.branch_param}={name}: {error_message(exc)}")
                    return False
                progress.state = "done" if result.finished else "stopped"
                return bool(result.finished)

        for key in keys:
            live.branch(str(key))
        finished = await asyncio.gather(*(branch(k) for k in keys))
        if failures:
            stopped = sum(1 for b in live.branches.values() if b.state == "stopped")
            raise StepFailed(
                step.name,
                f"{failures[0]}"
                + (f" (and {len(failures) - 1} more branches failed)" if len(failures) > 1 else "")
                + f"; {stopped} other branches stopped at a batch boundary and resume from "
                "their checkpoints",
            )
        if all(finished):
            await asyncio.to_thread(target.mark_done, m.run_key, step.name, self.clock())
        done = sum(1 for f in finished if f)
        return StepOutcome(live.rows, f"{done} of {len(keys)} branches done", all(finished))

    async def _command(
        self,
        m: Migration,
        step: PlannedCommand,
        target: Target,
        control: Control,
        live: LiveProgress,
        params: dict[str, Any],
    ) -> StepOutcome:
        argv, env, secrets = fill_target(step.command, target.engine.url)
        try:
            result = await run_command(
                argv, env=env, timeout=step.timeout, secrets=secrets, on_line=live.tail.append
            )
        except CommandFailed as exc:
            raise StepFailed(step.name, str(exc)) from exc
        await asyncio.to_thread(target.mark_done, m.run_key, step.name, self.clock())
        return StepOutcome(0, f"exit 0 after {result.seconds:.1f}s, {result.lines} lines of output")

    async def _backup(
        self, m: Migration, step: PlannedBackup, target: Target, *args: Any
    ) -> StepOutcome:
        tables = list(step.tables) if step.tables else None
        info: BackupInfo = await asyncio.to_thread(
            target.sql.backup,
            target.engine,
            self.backup_dir / m.run_key,
            label=f"{m.run_key}-{step.name}",
            tables=tables,
        )
        record = {**dataclasses.asdict(info), "created_at": info.created_at.isoformat()}
        await asyncio.to_thread(self.store.add_backup, m.id, record, self.clock())
        await asyncio.to_thread(target.mark_done, m.run_key, step.name, self.clock())
        size = f"{info.size_bytes:,} bytes" if info.size_bytes is not None else "size unknown"
        checked = "verified" if info.verified else "NOT verified"
        return StepOutcome(0, f"backup at {info.location} ({size}, {checked})")

    async def _restore(
        self, m: Migration, step: PlannedStep, target: Target, *args: Any
    ) -> StepOutcome:
        latest = (await asyncio.to_thread(self.store.get, m.id)).backups
        if not latest:
            raise StepFailed(step.name, "this migration took no backup; add a backup step first")
        record = dict(latest[-1])
        record["tables"] = tuple(record["tables"]) if record.get("tables") else None
        record.pop("created_at", None)
        info = BackupInfo(**record)
        await asyncio.to_thread(target.sql.restore, target.engine, info)
        await asyncio.to_thread(target.mark_done, m.run_key, step.name, self.clock())
        return StepOutcome(0, f"restored {info.location}")
