"""The bot's batch step as the engine runs it: ``run_batches`` on a ``Target``, moving the
source tenant's Tasks to the target tenant with the default BatchSettings."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from bench._common import SOURCE_TENANT, TARGET_TENANT, percentile, rnd
from bot.adapters.targets.batches import BatchJob, BatchReport, run_batches
from bot.adapters.targets.target import Target
from bot.domain.plan import BatchPlan

PLAN = BatchPlan(
    table="Tasks",
    key="Id",
    where_sql="TenantId = :source_tenant",
    set_sql="TenantId = :target_tenant",
)


def _now() -> datetime:
    return datetime.now(UTC)


def run_bot_step(url: str) -> dict[str, Any]:
    """Run the batch step to completion on ``url``; return its figures."""
    run_key = f"bench-{secrets.token_hex(6)}"
    job = BatchJob(
        run_key=run_key,
        step="move-tasks",
        branch="",
        plan=PLAN,
        params={
            "source_tenant": SOURCE_TENANT,
            "target_tenant": TARGET_TENANT,
            "migration_id": run_key,
        },
        timeout=60.0,
    )
    reports: list[BatchReport] = []
    target = Target.connect("bench", url)
    try:
        target.prepare()  # the bookkeeping tables exist before the clock starts, as in a run
        started = time.perf_counter()
        result = run_batches(
            target, job, should_stop=lambda: False, on_batch=reports.append, now=_now
        )
        seconds = time.perf_counter() - started
    finally:
        target.engine.dispose()
    return _figures(seconds, result.rows_done, result.batches, result.finished, reports)


def _figures(
    seconds: float, rows: int, batches: int, finished: bool, reports: list[BatchReport]
) -> dict[str, Any]:
    batch_ms = [r.seconds * 1000 for r in reports]
    sizes = [r.rows for r in reports]
    return {
        "seconds": rnd(seconds),
        "rows": rows,
        "finished": finished,
        "batches": batches,
        "rows_per_second": rnd(rows / seconds, 0) if seconds else 0.0,
        "longest_batch_ms": rnd(max(batch_ms), 1) if batch_ms else None,
        "batch_ms_p50": rnd(percentile(batch_ms, 0.5), 1) if batch_ms else None,
        "batch_ms_p95": rnd(percentile(batch_ms, 0.95), 1) if batch_ms else None,
        "batch_rows_max": max(sizes) if sizes else None,
        "batch_rows_median": percentile(sizes, 0.5) if sizes else None,
        "settings": PLAN.settings.model_dump(),
    }
