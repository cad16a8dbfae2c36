"""The step engine: failure reports, cancellation at a step boundary, resume after a crash."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.adapters import blocks
from bot.domain.lifecycle import Event, State
from bot.domain.planned import PlannedSql
from bot.local.barq_schema import create_demo_database, create_schema, seed_demo
from tests import harness
from tests.harness import MIGRATIONS, Harness

ROOT = Path(__file__).resolve().parent.parent
BROKEN = """
name: broken-move
description: moves tasks, then fails on a column that does not exist
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: move-tasks
    kind: sql
    sql: UPDATE Tasks SET TenantId = :target_tenant WHERE TenantId = :source_tenant
  - name: move-ghosts
    kind: sql
    sql: UPDATE Tasks SET NoSuchColumn = 1 WHERE TenantId = :source_tenant
  - name: never-runs
    kind: check
    sql: SELECT 1
    expect: "== 1"
"""
COPY = """
name: copy-then-check
description: copy tenant 3's task ids with one INSERT (twice would break the key), then check
targets: [staging]
steps:
  - name: create
    kind: sql
    sql: CREATE TABLE IF NOT EXISTS CopiedTasks (Id INTEGER PRIMARY KEY)
  - name: copy
    kind: sql
    sql: INSERT INTO CopiedTasks (Id) SELECT Id FROM Tasks WHERE TenantId = 3
  - name: copied
    kind: check
    sql: SELECT COUNT(*) FROM CopiedTasks
    expect: "> 0"
"""
SLOW = """
name: slow-move
description: waits on the server, then moves tasks
targets: [staging]
parameters:
  source_tenant: {type: int, min: 1}
  target_tenant: {type: int, min: 1}
steps:
  - name: wait
    kind: sql
    sql:
      postgresql: SELECT pg_sleep(1.5)
      sqlite: SELECT 1
      mssql: WAITFOR DELAY '00:00:01.500'

  - name: move-tasks
    kind: sql
    sql: UPDATE Tasks SET TenantId = :target_tenant WHERE TenantId = :source_tenant
"""

BACKUP_MISSING_TABLE = """
name: backup-missing-table
description: backs up a table that does not exist
targets: [staging]
steps:
  - name: snapshot
    kind: backup
    tables: [NoSuchTable]
"""
# the command step deletes the backup files, so the restore step finds its backup missing
RESTORE_LOST_BACKUP = """
name: restore-lost-backup
description: backs up, loses the backup, then restores it
targets: [staging]
steps:
  - name: snapshot
    kind: backup
  - name: lose-backup
    kind: command
    argv: [{python}, -c, "import pathlib; [p.unlink() for p in pathlib.Path(r'{backups}').rglob('*')
      if p.is_file()]"]
  - name: put-back
    kind: restore
"""
COMMAND_EXITS = """
name: command-exits
description: a program that fails
targets: [staging]
steps:
  - name: fail
    kind: command
    argv: [{python}, -c, "print('about to fail'); raise SystemExit(3)"]
"""


def _runbooks(tmp_path: Path) -> Path:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    shutil.copy(ROOT / "runbooks" / "tenant-consolidation.yaml", folder)
    (folder / "broken-move.yaml").write_text(BROKEN)
    (folder / "slow-move.yaml").write_text(SLOW)
    (folder / "copy-then-check.yaml").write_text(COPY)
    (folder / "backup-missing-table.yaml").write_text(BACKUP_MISSING_TABLE)
    python = sys.executable
    (folder / "restore-lost-backup.yaml").write_text(
        RESTORE_LOST_BACKUP.format(python=python, backups=tmp_path / "backups")
    )
    (folder / "command-exits.yaml").write_text(COMMAND_EXITS.format(python=python))
    return folder


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    bot = await harness.start(tmp_path, harness.policies(staging), _runbooks(tmp_path))
    yield bot
    await bot.close()


@pytest.fixture
async def pg(tmp_path: Path, pg_url: str) -> AsyncIterator[Harness]:
    engine = create_engine(pg_url)
    create_schema(engine)
    seed_demo(engine, now=harness.now())
    engine.dispose()
    bot = await harness.start(tmp_path, harness.policies(pg_url), _runbooks(tmp_path))
    yield bot
    await bot.close()


def _scalar(h: Harness, sql: str) -> int:
    with h.bot.service.targets["staging"].target.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


async def _approved(h: Harness, runbook: str) -> int:
    m, _ = await h.bot.service.request(
        "U0ALICE", runbook, {"source_tenant": "3", "target_tenant": "7"}, "staging"
    )
    await h.bot.service.approve(m.id, "U0BOB", m.plan.hash)
    return m.id


async def test_failure_reports_error_step_and_what_was_committed(h: Harness) -> None:
    """A failing step fails the run; the report names the step, the database's error and
    how far the data was committed."""
    moved = _scalar(h, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    migration_id = await _approved(h, "broken-move")
    await h.settle()
    await h.bot.delivery.drain()
    m = h.bot.store.get(migration_id)
    assert m.state is State.FAILED
    assert m.error is not None and "step 2 (move-ghosts)" in m.error and "NoSuchColumn" in m.error
    assert "[SQL:" not in m.error, "the database's own message, not SQLAlchemy's echo"
    outcome = next(x for x in h.slack.messages_in(MIGRATIONS) if x.get("thread_ts"))
    report = str(outcome["blocks"])
    assert "Committed up to step 1 (move-tasks)" in report
    assert "step 2 (move-ghosts) was rolled back" in report
    assert _scalar(h, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == 0
    assert _scalar(h, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 7") >= moved
    assert [r.name for r in h.bot.store.step_runs(migration_id)] == ["move-tasks", "move-ghosts"]


async def test_a_resumed_failed_run_counts_each_step_once(h: Harness) -> None:
    """Resuming a failed run skips the committed step, saying it was committed before the
    failure; when it fails again, 1 of 3 steps is done and step 1's rows are counted once."""
    moved = _scalar(h, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    migration_id = await _approved(h, "broken-move")
    await h.settle()
    await h.bot.service.resume(migration_id, "U0ALICE")
    await h.settle()
    m, runs = h.bot.store.get(migration_id), h.bot.store.step_runs(migration_id)
    assert m.state is State.FAILED
    assert [r.name for r in runs] == ["move-tasks", "move-ghosts", "move-tasks", "move-ghosts"]
    assert runs[2].detail == (
        "committed in an earlier execution of this run (before a failure); not run again"
    )
    shown = harness.text_of(blocks.progress(m, runs, harness.now()))
    assert "1 of 3 steps done" in shown and f"{moved:,} rows so far" in shown
    report = harness.text_of(blocks.outcome(m, runs))
    assert report.count("move-tasks: succeeded") == 1 and report.count("move-ghosts:") == 1
    assert "Committed up to step 1 (move-tasks)" in report


async def test_resume_after_a_crash_skips_committed_steps(h: Harness) -> None:
    """A run interrupted after a step committed resumes from the checkpoint: the sql step
    (whose second run would break the table's primary key) is not applied twice."""
    m, _ = await h.bot.service.request("U0ALICE", "copy-then-check", {}, "staging")
    store, target = h.bot.store, h.bot.service.targets["staging"].target
    now = harness.now()
    store.record_decision(
        m.id, user="U0BOB", decision="approve", plan_hash=m.plan.hash, now=now, event=Event.APPROVE
    )
    store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
    params = {**m.plan.params, "migration_id": m.run_key}
    for step in m.plan.steps[:2]:
        assert isinstance(step, PlannedSql)
        copied = target.run_sql(
            step.sql, params, run_key=m.run_key, step=step.name, timeout=10, now=now
        )
    assert copied > 0
    # the bot "crashed" here; a pass of run_due after the restart picks the run up
    await h.bot.service.run_due(harness.now())
    await h.settle()
    m = store.get(m.id)
    assert m.state is State.SUCCEEDED, m.error
    runs = store.step_runs(m.id)
    assert runs[1].detail == (
        "committed in an earlier execution of this run (before a restart); not run again"
    )
    assert _scalar(h, "SELECT COUNT(*) FROM CopiedTasks") == copied


@pytest.mark.postgres
async def test_cancel_during_a_run_stops_at_the_next_step_boundary(pg: Harness) -> None:
    """/migrate cancel while a step runs lets that step finish and runs no further step."""
    before = _scalar(pg, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3")
    migration_id = await _approved(pg, "slow-move")
    await asyncio.sleep(0.5)
    assert pg.bot.store.get(migration_id).state is State.RUNNING
    m = await pg.bot.service.cancel(migration_id, "U0ALICE")
    assert m.state is State.CANCELLING and m.cancel_requested
    await pg.settle()
    assert pg.bot.store.get(migration_id).state is State.CANCELLED
    assert [r.name for r in pg.bot.store.step_runs(migration_id)] == ["wait"]
    assert _scalar(pg, "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == before


async def test_only_the_requester_or_an_approver_may_cancel(h: Harness) -> None:
    """Anyone else is refused."""
    m, _ = await h.bot.service.request(
        "U0ALICE", "tenant-consolidation", {"source_tenant": "3", "target_tenant": "7"}, "staging"
    )
    with pytest.raises(PermissionError, match="only the requester"):
        await h.bot.service.cancel(m.id, "U0DAVE")
    assert (await h.bot.service.cancel(m.id, "U0CAROL")).state is State.CANCELLED


async def _failed_run(h: Harness, runbook: str) -> tuple[str, str]:
    """Run ``runbook`` to its end; return its error and its last step run's detail, after
    checking that the migration failed and that step run was closed as failed."""
    m, _ = await h.bot.service.request("U0ALICE", runbook, {}, "staging")
    await h.bot.service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    m = h.bot.store.get(m.id)
    last = h.bot.store.step_runs(m.id)[-1]
    assert (m.state, last.state) == (State.FAILED, "failed"), (m.error, last)
    assert m.error is not None and last.detail is not None
    return m.error, last.detail


async def test_a_failed_backup_step_fails_the_run_with_the_backups_own_message(
    h: Harness,
) -> None:
    """A backup that cannot be verified (its tables match nothing) fails that step with the
    backup's own message, not as an internal error, and its step run does not stay running."""
    error, detail = await _failed_run(h, "backup-missing-table")
    assert error.startswith("step 1 (snapshot): backup ")
    assert "lacks tables ['NoSuchTable']" in error and "internal error" not in error
    assert error == f"step 1 (snapshot): {detail}"


async def test_a_failed_restore_step_fails_the_run_with_the_restores_own_message(
    h: Harness,
) -> None:
    """A restore whose backup file has gone fails that step, saying the file is missing."""
    error, detail = await _failed_run(h, "restore-lost-backup")
    assert error.startswith("step 3 (put-back): backup file ") and error.endswith(" is missing")
    assert error == f"step 3 (put-back): {detail}"


async def test_a_failed_command_step_fails_the_run_with_the_exit_code_and_output(
    h: Harness,
) -> None:
    """A command that exits non-zero fails its step with the code and its last lines."""
    error, detail = await _failed_run(h, "command-exits")
    assert error.startswith("step 1 (fail): command `") and "exited with code 3" in error
    assert detail.endswith("last 1 lines:\nabout to fail")


async def test_a_backup_dir_that_cannot_be_created_fails_the_step_naming_the_path(
    h: Harness, tmp_path: Path
) -> None:
    """An OS error fails the step with the OS's message and the file, not an internal error."""
    (tmp_path / "backups").write_text("a file where the backup folder should be")
    error, _detail = await _failed_run(h, "restore-lost-backup")
    assert error.startswith(f"step 1 (snapshot): Not a directory: {tmp_path / 'backups'}")
