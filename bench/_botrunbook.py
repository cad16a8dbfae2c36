"""The bot's whole tenant-consolidation run as the engine runs it: every step of the runbook's
plan in order, on a ``Target`` (each batch step: the progress count, then ``run_batches``,
then its done mark; each check: ``Target.check``), or its rollback after it. Planning and
approval are not timed."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench._common import SOURCE_TENANT, TARGET_TENANT, MeasurementError, rnd
from bot.adapters.runbook_files import load_runbook
from bot.adapters.targets.batches import BatchJob, remaining, run_batches
from bot.adapters.targets.target import Target
from bot.domain.plan import build_plan
from bot.domain.planned import PlannedBatch, PlannedCheck, PlannedStep

RUNBOOK = Path(__file__).resolve().parent.parent / "runbooks" / "tenant-consolidation.yaml"


def _now() -> datetime:
    return datetime.now(UTC)


def run_bot_runbook(url: str, runbook_path: Path = RUNBOOK) -> dict[str, Any]:
    """Run every step of the runbook at ``runbook_path`` (moving the source tenant to the
    target tenant) to the end on ``url``; return the whole run's figures and each step's."""
    return _run(url, runbook_path, rollback=False)


def run_bot_rollback(url: str, runbook_path: Path = RUNBOOK) -> dict[str, Any]:
    """Run the runbook (not timed), then time its rollback steps and ``after_rollback``
    checks as a rollback runs them (bound to the run's parameters and journal)."""
    return _run(url, runbook_path, rollback=True)


def _run(url: str, runbook_path: Path, *, rollback: bool) -> dict[str, Any]:
    run_key = f"bench-{secrets.token_hex(6)}"
    runbook = load_runbook(runbook_path)
    target = Target.connect("bench", url)
    params = {"source_tenant": SOURCE_TENANT, "target_tenant": TARGET_TENANT}
    plan = build_plan(runbook, dict(params), "bench", target.dialect.name)
    bound = {**params, "migration_id": run_key}
    try:
        target.prepare()  # the bookkeeping tables exist before the clock starts, as in a run
        if rollback:
            _steps(target, run_key, plan.steps, bound)
            started = time.perf_counter()
            steps = _steps(target, f"{run_key}-r", plan.rollback, bound)
            after = [s.planned(0, target.dialect.name, params) for s in runbook.after_rollback]
            steps |= _steps(target, f"{run_key}-r", tuple(after), bound)
        else:
            started = time.perf_counter()
            steps = _steps(target, run_key, plan.steps, bound)
        seconds = time.perf_counter() - started
        with target.engine.connect() as conn:
            journalled = conn.execute(
                text("SELECT COUNT(*) FROM barq_journal WHERE migration_id = :m"), {"m": run_key}
            ).scalar_one()
    finally:
        target.engine.dispose()
    moved = sum(s.get("rows", 0) for s in steps.values() if "batches" in s)
    return {
        "seconds": rnd(seconds),
        "rows": moved,
        "journalled_rows": int(journalled),
        "rows_per_second": rnd(moved / seconds, 0) if seconds else 0.0,
        "runbook": runbook_path.name,
        "steps": steps,
    }


def _steps(
    target: Target, run_key: str, plan_steps: tuple[PlannedStep, ...], bound: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Run ``plan_steps`` in order as the engine does; each step's figures."""
    steps: dict[str, dict[str, Any]] = {}
    for step in plan_steps:
        began = time.perf_counter()
        if isinstance(step, PlannedBatch):
            job = BatchJob(run_key, step.name, "", step.batch, bound, timeout=step.timeout)
            remaining(target, job)  # the engine's progress figures, before the batches
            result = run_batches(
                target, job, should_stop=lambda: False, on_batch=lambda _: None, now=_now
            )
            target.mark_done(run_key, step.name, _now())
            figures = {"rows": result.rows_done, "batches": result.batches}
        elif isinstance(step, PlannedCheck):
            check = target.check(step.sql, bound, expect=step.expect, equals_sql=step.equals_sql)
            if not check.passed:
                raise MeasurementError(
                    f"check {step.name} failed: {check.value!r}, expected {check.expected}"
                )
            figures = {"value": check.value}
        else:
            raise MeasurementError(f"the bench cannot run a {step.kind} step ({step.name})")
        steps[step.name] = {"seconds": rnd(time.perf_counter() - began), **figures}
    return steps
