"""Batch and parallel steps through the engine: pause and resume at batch boundaries, a
failing parallel branch stopping its siblings, and a resume finishing them. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bot.adapters import blocks
from bot.adapters.targets.batches import BatchJob, run_batches
from bot.domain.lifecycle import Event, State
from bot.domain.planned import PlannedBatch
from bot.executors import batch as batch_executor
from tests import harness
from tests.harness import Harness

ITEMS = """
CREATE TABLE Items (
  Id INTEGER PRIMARY KEY,
  TenantId INTEGER NOT NULL,
  Value INTEGER NOT NULL CHECK (Value < 100),
  Hits INTEGER NOT NULL DEFAULT 0
)
"""
COUNTER = """
name: count-items
description: add one hit to every item, in small batches
targets: [staging]
steps:
  - name: hit
    kind: batch
    table: Items
    key: Id
    update: Hits = Hits + 1
    batch: {size: 10, min: 5, max: 10, budget_ms: 200}
"""
PARALLEL = """
name: bump-tenants
description: add 50 to every item's value, one branch per tenant
targets: [staging]
steps:
  - name: bump
    kind: parallel
    over: SELECT DISTINCT TenantId FROM Items ORDER BY TenantId
    as: tenant
    concurrency: 2
    step:
      name: bump-tenant
      kind: batch
      table: Items
      key: Id
      where: TenantId = :tenant
      update: Value = Value + 50, Hits = Hits + 1
      batch: {size: 5, min: 5, max: 5, budget_ms: 200}
      retries: 10
"""
RESTORING = """
name: change-then-restore
description: back up, change every item, then restore the backup
targets: [staging]
steps:
  - name: backup
    kind: backup
  - name: hit
    kind: batch
    table: Items
    key: Id
    update: Hits = Hits + 1
  - name: all-hit
    kind: check
    sql: SELECT MIN(Hits) FROM Items
    expect: "== 1"
  - name: restore
    kind: restore
  - name: none-hit
    kind: check
    sql: SELECT MAX(Hits) FROM Items
    expect: "== 0"
"""
BAD_TENANT = 4


def _seed(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(ITEMS))
        for i in range(1, 301):
            tenant = (i % 6) + 1
            value = 60 if (tenant == BAD_TENANT and i == 201) else 0
            conn.execute(
                text("INSERT INTO Items (Id, TenantId, Value, Hits) VALUES (:i, :t, :v, 0)"),
                {"i": i, "t": tenant, "v": value},
            )
    engine.dispose()


@pytest.fixture
async def h(tmp_path: Path, target_url: str) -> AsyncIterator[Harness]:
    _seed(target_url)
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "count-items.yaml").write_text(COUNTER)
    (folder / "bump-tenants.yaml").write_text(PARALLEL)
    (folder / "change-then-restore.yaml").write_text(RESTORING)
    bot = await harness.start(tmp_path, harness.policies(target_url), folder)
    yield bot
    await bot.close()


def _assert_nothing_held(h: Harness) -> None:
    """No open transaction and no lock on Items: another session gets an exclusive lock at
    once (and, on PostgreSQL, no session of the bot sits idle in a transaction)."""
    url = h.bot.service.targets["staging"].target.engine.url
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 1})
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            conn.exec_driver_sql("ROLLBACK")
    else:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            idle_in_transaction = conn.execute(
                text(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
            assert idle_in_transaction.scalar() == 0
            conn.execute(text("SET LOCAL lock_timeout = '1s'"))
            conn.execute(text("LOCK TABLE Items IN ACCESS EXCLUSIVE MODE"))
    engine.dispose()


def _rows(h: Harness, sql: str) -> list[tuple[int, ...]]:
    with h.bot.service.targets["staging"].target.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _watch_live(
    h: Harness, migration_id: int, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[int, int | None, int]]:
    """From now on, after each batch, note the live progress's rows, total and base rows."""
    real, seen = batch_executor.run_batches, []

    def watched(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
        def watch(report: Any) -> None:
            on_batch(report)
            live = h.bot.service.engine.live(migration_id)
            assert live is not None
            seen.append((live.rows, live.total, live.base_rows))

        return real(*args, on_batch=watch, **kwargs)

    monkeypatch.setattr(batch_executor, "run_batches", watched)
    return seen


async def test_pause_stops_at_a_batch_boundary_and_resume_finishes_exactly_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paused batch step holds nothing, keeps its checkpoint, and resumes without applying
    any batch twice or skipping one."""
    service = h.bot.service
    loop = asyncio.get_running_loop()
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    real = batch_executor.run_batches

    def run_batches(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
        def counted(report: Any) -> None:
            on_batch(report)
            if report.batches == 3:  # the user's /migrate pause lands during batch 4
                asyncio.run_coroutine_threadsafe(service.pause(m.id, "U0ALICE"), loop).result()

        return real(*args, on_batch=counted, **kwargs)

    monkeypatch.setattr(batch_executor, "run_batches", run_batches)
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.PAUSED
    assert _rows(h, "SELECT SUM(Hits), MAX(Hits) FROM Items") == [(30, 1)], "3 batches of 10"
    _assert_nothing_held(h)

    monkeypatch.setattr(batch_executor, "run_batches", real)
    seen = _watch_live(h, m.id, monkeypatch)
    await service.resume(m.id, "U0ALICE")
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED
    assert seen[0] == (40, 300, 30), "rows and total include the 30 rows done before the pause"
    runs = h.bot.store.step_runs(m.id)
    shown = harness.text_of(blocks.progress(done, runs, harness.now()))
    assert "300 rows so far" in shown and "1 of 1 steps done" in shown
    report = harness.text_of(blocks.outcome(done, runs))
    assert "1. hit: succeeded, 300 rows" in report and report.count("hit:") == 1
    assert _rows(h, "SELECT MIN(Hits), MAX(Hits), COUNT(*) FROM Items") == [(1, 1, 300)]
    assert [r.state for r in h.bot.store.step_runs(m.id)] == ["stopped", "succeeded"]
    actions = [a.action for a in h.bot.store.audit_trail(m.id)]
    order = [actions.index(a) for a in ("pause-request", "pause", "resume", "succeed")]
    assert order == sorted(order), actions


async def test_after_a_restart_mid_step_the_figures_count_each_row_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot stopped after 3 batches of a step (its step run left open, its rows last
    published at 20); after the restart the live total, rate base and report count the 30
    committed rows once, and the step shows as one line."""
    service, store = h.bot.service, h.bot.store
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    h.approve_in_store(m, "U0BOB")
    now = harness.now()
    store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
    step = m.plan.steps[0]
    assert isinstance(step, PlannedBatch)
    store.step_started(m.id, "run", 1, step.name, step.kind, now)
    store.step_rows(m.id, "run", 1, 20)
    job = BatchJob(m.run_key, step.name, "", step.batch, {"migration_id": m.run_key}, 10)
    reports: list[Any] = []
    run_batches(
        service.targets["staging"].target,
        job,
        should_stop=lambda: len(reports) == 3,
        on_batch=reports.append,
        now=harness.now,
    )
    assert _rows(h, "SELECT SUM(Hits) FROM Items") == [(30,)]
    seen = _watch_live(h, m.id, monkeypatch)
    await service.run_due(harness.now())  # the restarted bot's first pass
    await h.settle()
    done, runs = store.get(m.id), store.step_runs(m.id)
    assert done.state is State.SUCCEEDED
    assert seen[0] == (40, 300, 30)
    assert [r.state for r in runs] == ["running", "succeeded"]
    shown = harness.text_of(blocks.progress(done, runs, harness.now()))
    assert "300 rows so far" in shown and "1 of 1 steps done" in shown
    report = harness.text_of(blocks.outcome(done, runs))
    assert "1. hit: succeeded, 300 rows" in report and report.count("hit:") == 1


async def test_a_failing_branch_stops_the_others_and_a_resume_finishes_them(h: Harness) -> None:
    """One tenant's branch hits a constraint; its siblings stop at a batch boundary; after the
    data is fixed, resuming the failed run finishes every branch, each row exactly once."""
    service = h.bot.service
    m, _ = await service.request("U0ALICE", "bump-tenants", {}, "staging")
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    failed = h.bot.store.get(m.id)
    assert failed.state is State.FAILED
    assert failed.error is not None and f"branch tenant={BAD_TENANT}" in failed.error
    assert _rows(h, "SELECT MAX(Hits) FROM Items") == [(1,)]
    done_before = _rows(h, "SELECT COUNT(*) FROM Items WHERE Hits = 1")[0][0]
    assert 0 < done_before < 300
    assert blocks.data_state(failed, h.bot.store.step_runs(m.id)) == (
        f"No step was completed; step 1 (bump) committed {done_before:,} rows in batches up "
        "to its last checkpoint; the failing batch was rolled back."
    )

    with h.bot.service.targets["staging"].target.engine.begin() as conn:
        conn.execute(text("UPDATE Items SET Value = 0 WHERE Id = 201"))
    resumed = await service.resume(m.id, "U0ALICE")
    assert resumed.state is State.RUNNING
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED
    assert _rows(h, "SELECT MIN(Hits), MAX(Hits) FROM Items") == [(1, 1)]
    runs = h.bot.store.step_runs(m.id)
    report = harness.text_of(blocks.outcome(done, runs))
    assert "1. bump: succeeded, 300 rows" in report and report.count("bump:") == 1
    assert _rows(h, "SELECT COUNT(*) FROM Items WHERE Value <> 50 AND Id <> 201") == [(0,)]


async def test_backup_and_restore_steps_round_trip_and_record_the_backup(h: Harness) -> None:
    """A backup step records a verified backup on the migration; a restore step puts the
    data back as it was."""
    service = h.bot.service
    m, _ = await service.request("U0ALICE", "change-then-restore", {}, "staging")
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is State.SUCCEEDED, done.error
    (backup,) = done.backups
    assert backup["verified"] is True and Path(backup["location"]).is_file()
    assert backup["sha256"] and backup["size_bytes"] > 0
    assert _rows(h, "SELECT SUM(Hits) FROM Items") == [(0,)]
    assert "backup" in [a.action for a in h.bot.store.audit_trail(m.id)]
