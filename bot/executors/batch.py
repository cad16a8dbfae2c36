"""batch and parallel steps: keyset batches in threads, each committed with its checkpoint;
a parallel step runs one batch job per branch key, a bounded number at a time. Rows a hook
left unchanged for a reason (bot.hooks.RowSkipped) are counted in the step's result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from bot.adapters.targets.batch_hooks import Skipped, load_hook, skipped_text
from bot.adapters.targets.batches import BatchJob, BatchReport, BatchResult, remaining, run_batches
from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedBatch, PlannedParallel
from bot.errors import StepFailed
from bot.executors.boundary import describe
from bot.executors.context import StepContext
from bot.executors.registry import executes

Batched = PlannedBatch | PlannedParallel


@executes(PlannedBatch)
async def run_batch(ctx: StepContext[PlannedBatch]) -> StepOutcome:
    """Run the batches until none is left, or until the run is asked to stop."""
    job = _job(ctx, "", ctx.params)
    live = ctx.live
    done, left = await asyncio.to_thread(remaining, ctx.target, job)
    live.rows, live.base_rows, live.total = done, done, done + left
    result = await asyncio.to_thread(_batches, ctx, job, ctx.control.stopping)
    if result.finished:
        await ctx.mark_done()
    summary = batch_summary(result, ctx.step.batch.key)
    return StepOutcome(result.rows_done, summary, result.finished)


def batch_summary(result: BatchResult, key: str = "key") -> str:
    """The step's detail line: "3 batches, longest 20 ms", or that no batch was needed; then
    the rows the hook left unchanged for a reason, named by their ``key`` column."""
    if result.batches == 0:
        line = "no batch needed: no rows were left to change"
    else:
        batches = "batch" if result.batches == 1 else "batches"
        line = f"{result.batches:,} {batches}, longest {result.longest_batch_seconds * 1000:.0f} ms"
        line += f", {result.retries} retried" if result.retries else ""
    skipped = skipped_text(result.skipped, key)
    return f"{line}; {skipped}" if skipped else line


@executes(PlannedParallel)
async def run_parallel(ctx: StepContext[PlannedParallel]) -> StepOutcome:
    """Run one batch job per key, ``concurrency`` at a time; a failing branch stops the others
    at their next batch boundary, and every branch resumes from its own checkpoint."""
    step, live = ctx.step, ctx.live
    keys = await asyncio.to_thread(ctx.target.keys, step.over_sql, ctx.params)
    gate = asyncio.Semaphore(step.concurrency)
    sibling_failed = threading.Event()
    failures: list[str] = []
    skipped: list[Skipped] = []

    def stopping() -> bool:
        return ctx.control.stopping() or sibling_failed.is_set()

    async def branch(key: Any) -> bool:
        name = str(key)
        async with gate:
            if stopping():
                live.branch(name).state = "stopped"
                return False
            job = _job(ctx, name, {**ctx.params, step.branch_param: key})
            progress = live.branch(name)
            try:
                done, left = await asyncio.to_thread(remaining, ctx.target, job)
                live.resume_branch(name, done, left)
                result = await asyncio.to_thread(_batches, ctx, job, stopping)
            except Exception as exc:
                sibling_failed.set()
                progress.state = "failed"
                failures.append(f"branch {step.branch_param}={name}: {describe(ctx, exc)}")
                return False
            progress.state = "done" if result.finished else "stopped"
            skipped.append(result.skipped)
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
        await ctx.mark_done()
    done = sum(1 for f in finished if f)
    left = skipped_text(sum(skipped, Skipped()), step.batch.key)
    summary = f"{done} of {len(keys)} branches done" + (f"; {left}" if left else "")
    return StepOutcome(live.rows, summary, all(finished))


def _job(ctx: StepContext[Batched], branch: str, params: dict[str, Any]) -> BatchJob:
    step = ctx.step
    return BatchJob(
        run_key=ctx.migration.run_key,
        step=step.name,
        branch=branch,
        plan=step.batch,
        params=params,
        timeout=step.timeout,
    )


def _batches(
    ctx: StepContext[Batched], job: BatchJob, should_stop: Callable[[], bool]
) -> BatchResult:
    """Run ``job``'s batches (in a thread), adding each batch to the live progress."""
    live, plan = ctx.live, ctx.step.batch

    def on_batch(report: BatchReport) -> None:
        live.add_rows(report.branch, report.rows_done)
        live.batches += 1
        live.retries += report.retries
        live.longest_batch = max(live.longest_batch, report.seconds)

    return run_batches(
        ctx.target,
        job,
        should_stop=should_stop,
        on_batch=on_batch,
        now=ctx.clock,
        hook=load_hook(ctx.runbooks_dir, plan) if plan.hook else None,
        throttle=ctx.control.throttle,
    )
