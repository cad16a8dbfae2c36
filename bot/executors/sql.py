"""sql and check steps: statements in one transaction, and a query whose value must pass."""

from __future__ import annotations

import asyncio

from bot.domain.control import StepOutcome
from bot.domain.planned import PlannedCheck, PlannedSql
from bot.errors import StepFailed
from bot.executors.context import StepContext
from bot.executors.registry import executes


@executes(PlannedSql)
async def run_sql(ctx: StepContext[PlannedSql]) -> StepOutcome:
    """Run the statements (with their checkpoint) in one transaction; retry it whole on
    transient errors."""
    step = ctx.step
    rows = await asyncio.to_thread(
        ctx.target.run_sql,
        step.sql,
        ctx.params,
        run_key=ctx.migration.run_key,
        step=step.name,
        timeout=step.timeout,
        now=ctx.clock(),
        retries=step.retries,
        throttle=ctx.control.throttle,
    )
    return StepOutcome(rows)


@executes(PlannedCheck)
async def run_check(ctx: StepContext[PlannedCheck]) -> StepOutcome:
    """Fail unless the query's value meets the expectation."""
    step = ctx.step
    result = await asyncio.to_thread(
        ctx.target.check, step.sql, ctx.params, expect=step.expect, equals_sql=step.equals_sql
    )
    if not result.passed:
        raise StepFailed(
            step.name, f"check failed: got {result.value!r}, expected {result.expected}"
        )
    return StepOutcome(0, f"value {result.value!r} (expected {result.expected})")
