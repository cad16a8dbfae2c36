"""A hook leaves a row unchanged for a reason (bot.hooks.RowSkipped): the batch runner records
it with the batch, exactly once across stops, resumes and failed batches, and the step's result
(of a batch step, across a pause, and of a parallel one, over its branches) counts it and names
the first few, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.adapters import blocks
from bot.adapters.targets.batch_hooks import Skipped, skipped_text
from bot.adapters.targets.batches import BatchJob, BatchReport, BatchResult, Hook, run_batches
from bot.adapters.targets.target import Target
from bot.domain.batching import BatchSettings
from bot.domain.lifecycle import State
from bot.domain.plan import BatchPlan
from bot.executors import batch as batch_executor
from bot.executors.batch import batch_summary
from bot.hooks import RowSkipped
from tests import harness
from tests.harness import Harness

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
IDS = list(range(1, 41))
ODD = [i for i in IDS if i % 7 == 0]  # 7, 14, 21, 28, 35: the rows the hook will not touch


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    t = Target.connect("test", target_url)
    with t.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INTEGER PRIMARY KEY, Hits INT NOT NULL)"))
        conn.execute(text("INSERT INTO Items (Id, Hits) VALUES (:id, 0)"), [{"id": i} for i in IDS])
    yield t
    t.engine.dispose()


def bump(row: dict[str, Any]) -> dict[str, Any] | None:
    """Counts a visit in Hits; a row whose Id is a multiple of 7 is left, with a reason."""
    if row["Id"] % 7 == 0:
        raise RowSkipped(f"Id {row['Id']} is a multiple of 7")
    return {"Hits": row["Hits"] + 1}


def job(run_key: str = "m-1") -> BatchJob:
    plan = BatchPlan(
        table="Items",
        key="Id",
        hook="items.py:bump",
        read=("Id", "Hits"),
        write=("Hits",),
        settings=BatchSettings(size=6, min=6, max=6),
    )
    return BatchJob(run_key, "bump", "", plan, {"migration_id": run_key}, timeout=30)


def run(target: Target, j: BatchJob, hook: Hook, stop_after: int | None = None) -> BatchResult:
    reports: list[BatchReport] = []
    return run_batches(
        target,
        j,
        should_stop=lambda: stop_after is not None and len(reports) >= stop_after,
        on_batch=reports.append,
        now=lambda: NOW,
        hook=hook,
    )


def hits(target: Target) -> dict[int, int]:
    with target.engine.connect() as conn:
        return {int(i): int(h) for i, h in conn.execute(text("SELECT Id, Hits FROM Items"))}


def recorded(target: Target) -> list[tuple[str, int, str]]:
    with target.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT migration_id, row_key, reason FROM barq_skipped_rows ORDER BY row_key")
        )
        return [(str(m), int(k), str(r)) for m, k, r in rows]


def test_skipped_rows_are_left_recorded_and_counted_across_a_stop(target: Target) -> None:
    """Stopped after two batches (one skip so far) and resumed by a new runner, as after a
    restart: every row is visited once, the skipped ones are left and recorded once, and the
    result counts the skips of both executions."""
    j = job()
    first = run(target, j, bump, stop_after=2)
    assert not first.finished and first.skipped == Skipped(1, ((7, "Id 7 is a multiple of 7"),))
    done = run(target, j, bump)
    assert done.finished and done.rows_done == len(IDS) - len(ODD)
    assert hits(target) == {i: 0 if i in ODD else 1 for i in IDS}
    assert recorded(target) == [("m-1", i, f"Id {i} is a multiple of 7") for i in ODD]
    assert done.skipped.count == 5 and [k for k, _ in done.skipped.first] == ODD
    again = run(target, j, bump)  # a finished step run once more skips nothing twice
    assert again.skipped == done.skipped and len(recorded(target)) == 5
    other = run(target, job("m-2"), bump)  # another run's skips are its own
    assert other.skipped.count == 5 and len(recorded(target)) == 10


def test_a_failed_batch_records_none_of_its_skips(target: Target) -> None:
    """A batch that fails after its hook skipped a row rolls back the record with the rows:
    the retry after the fix records the skip once."""
    j = job()

    def broken(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["Id"] == 9:
            raise ValueError("hook bug on Id 9")
        return bump(row)

    run(target, j, bump, stop_after=1)  # Ids 1-6
    with pytest.raises(ValueError, match="hook bug on Id 9"):
        run(target, j, broken)  # Ids 7-12: skips 7, then fails on 9
    assert recorded(target) == [] and hits(target)[8] == 0
    result = run(target, j, bump)
    assert result.skipped.count == 5 and [k for _, k, _ in recorded(target)] == ODD


def test_the_steps_result_names_a_few_skipped_rows() -> None:
    """The count, the first rows by key with their reasons, and where the rest are."""
    assert skipped_text(Skipped(), "Id") == ""
    one = Skipped(1, ((17, "not valid JSON"),))
    assert (
        skipped_text(one, "Id")
        == "1 row left unchanged, for the reason given: Id 17: not valid JSON"
    )
    many = Skipped(1204, tuple((k, f"bad {k}") for k in range(1, 6)))
    assert skipped_text(many, "UserId") == (
        "1,204 rows left unchanged, for the reasons given: UserId 1: bad 1; UserId 2: bad 2;"
        " UserId 3: bad 3; UserId 4: bad 4; UserId 5: bad 5; and 1,199 more"
        " (all in barq_skipped_rows)"
    )
    result = BatchResult(30, 3, True, 0.02, 0, one)
    assert batch_summary(result, "Id") == (
        "3 batches, longest 20 ms; 1 row left unchanged, for the reason given:"
        " Id 17: not valid JSON"
    )
    branches = Skipped(2, ((9, "b"), (30, "c"))) + one
    assert branches == Skipped(3, ((9, "b"), (17, "not valid JSON"), (30, "c")))


def test_a_skip_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="RowSkipped needs a reason"):
        RowSkipped("  ")


HOOK_FILE = """
from bot.hooks import RowSkipped


def bump(row):
    if row["Id"] % 7 == 0:
        raise RowSkipped(f"Id {row['Id']} is a multiple of 7")
    return {"Hits": row["Hits"] + 1}
"""
BATCH = """
name: skip-items
description: add one hit to every item but the multiples of 7
targets: [staging]
steps:
  - name: bump
    kind: batch
    table: Tenanted
    key: Id
    transform: {hook: items.py:bump, read: [Id, Hits], write: [Hits]}
    batch: {size: 6, min: 6, max: 6, budget_ms: 200}
"""
PARALLEL = """
name: skip-tenants
description: the same, one branch per tenant
targets: [staging]
steps:
  - name: bump
    kind: parallel
    over: SELECT DISTINCT TenantId FROM Tenanted ORDER BY TenantId
    as: tenant
    concurrency: 2
    step:
      name: bump-tenant
      kind: batch
      table: Tenanted
      key: Id
      where: TenantId = :tenant
      transform: {hook: items.py:bump, read: [Id, Hits], write: [Hits]}
      batch: {size: 5, min: 5, max: 5, budget_ms: 200}
"""


@pytest.fixture
async def h(tmp_path: Path, target_url: str) -> AsyncIterator[Harness]:
    engine = create_engine(target_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE Tenanted (Id INTEGER PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(
            text("INSERT INTO Tenanted (Id, TenantId, Hits) VALUES (:id, :t, 0)"),
            [{"id": i, "t": i % 3} for i in IDS],
        )
    engine.dispose()
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "items.py").write_text(HOOK_FILE)
    (folder / "skip-items.yaml").write_text(BATCH)
    (folder / "skip-tenants.yaml").write_text(PARALLEL)
    bot = await harness.start(tmp_path, harness.policies(target_url), folder)
    yield bot
    await bot.close()


async def test_the_outcome_counts_the_skips_of_every_execution_of_the_step(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused after two batches (one row skipped) and resumed: the step's result in the
    outcome message counts all five skipped rows and names them."""
    service = h.bot.service
    loop = asyncio.get_running_loop()
    m, _ = await service.request("U0ALICE", "skip-items", {}, "staging")
    real = batch_executor.run_batches

    def pausing(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
        def counted(report: BatchReport) -> None:
            on_batch(report)
            if report.batches == 2:
                asyncio.run_coroutine_threadsafe(service.pause(m.id, "U0ALICE"), loop).result()

        return real(*args, on_batch=counted, **kwargs)

    monkeypatch.setattr(batch_executor, "run_batches", pausing)
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.PAUSED
    paused = h.bot.store.step_runs(m.id)[-1].detail or ""
    assert "1 row left unchanged, for the reason given: Id 7: Id 7 is a multiple of 7" in paused
    monkeypatch.setattr(batch_executor, "run_batches", real)
    await service.resume(m.id, "U0ALICE")
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED
    shown = harness.text_of(blocks.outcome(done, h.bot.store.step_runs(m.id)))
    assert f"bump: succeeded, {len(IDS) - len(ODD)} rows" in shown
    assert "5 rows left unchanged, for the reasons given: Id 7: Id 7 is a multiple of 7;" in shown
    assert "Id 35: Id 35 is a multiple of 7" in shown


async def test_a_parallel_step_counts_the_skips_of_all_its_branches(h: Harness) -> None:
    service = h.bot.service
    m, _ = await service.request("U0ALICE", "skip-tenants", {}, "staging")
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED
    detail = h.bot.store.step_runs(m.id)[-1].detail
    assert detail == (
        "3 of 3 branches done; 5 rows left unchanged, for the reasons given: "
        + "; ".join(f"Id {i}: Id {i} is a multiple of 7" for i in ODD)
    )
