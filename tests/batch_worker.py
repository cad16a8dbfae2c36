"""The batch step of the kill test, runnable in a subprocess that the test SIGKILLs:
``python -m tests.batch_worker URL TABLE RUN_KEY [journal]``. It prints one line per committed
batch and ``finished <rows_done>`` at the end; with ``journal`` each batch journals its keys into
barq_journal."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bot.adapters.targets.batches import BatchJob, BatchReport, BatchResult, run_batches
from bot.adapters.targets.target import Target
from bot.domain.batching import BatchSettings
from bot.domain.plan import BatchPlan

# Small batches on a tight budget: many short transactions, so a kill lands anywhere.
SETTINGS = BatchSettings(size=100, min=50, max=400, budget_ms=5)


def move(
    url: str, table: str, run_key: str, *, quiet: bool = False, journal: bool = False
) -> BatchResult:
    """Move every row of tenant 1 to tenant 2, counting each application in Hits (and
    journalling the keys, with ``journal``)."""
    target = Target.connect("kill-test", url)
    plan = BatchPlan(
        table=table,
        key="Id",
        where_sql="TenantId = :s",
        set_sql="Hits = Hits + 1, TenantId = :t",
        settings=SETTINGS,
        journal="barq_journal" if journal else None,
    )
    params = {"s": 1, "t": 2, "migration_id": run_key}
    job = BatchJob(run_key, "move", "", plan, params, timeout=30)

    def report(r: BatchReport) -> None:
        if not quiet:
            print(r.batches, r.rows_done, flush=True)

    try:
        return run_batches(
            target, job, should_stop=lambda: False, on_batch=report, now=lambda: datetime.now(UTC)
        )
    finally:
        target.engine.dispose()


if __name__ == "__main__":
    result = move(*sys.argv[1:4], journal=sys.argv[4:5] == ["journal"])
    print("finished", result.rows_done, flush=True)
