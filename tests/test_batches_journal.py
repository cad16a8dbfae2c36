"""Journalled batch updates (``journal:`` on a batch step) on real SQLite and PostgreSQL: each
batch writes the keys it updates into barq_journal in its own transaction, so the rows
journalled are exactly the rows moved, even while rows join the source tenant mid-run, and a
batch that does not commit journals nothing.

Items(Id, TenantId, Hits) with the change ``Hits = Hits + 1, TenantId = :t``: a moved row
shows Hits = 1 (2 if moved twice), a row never moved Hits = 0.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from bot.adapters.targets.batches import BatchReport, batch_sql, remaining, run_batches
from bot.adapters.targets.dialects import dialect_for
from bot.adapters.targets.target import Target
from bot.domain.plan import BatchPlan
from tests.test_batches import (
    FIXED,
    NOW,
    REPO,
    _line,
    checkpoint,
    fail_checkpoint_write,
    job,
    make_items,
    move,
    rows,
    run,
)


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    t = Target.connect("test", target_url)
    yield t
    t.engine.dispose()


def journalled(table: str = "Items", **kw: Any) -> BatchPlan:
    return move(table, set_sql="Hits = Hits + 1, TenantId = :t", journal="barq_journal", **kw)


def journal(target: Target, run_key: str = "m-1", table: str = "Items") -> list[int]:
    """The journalled keys of ``table`` in run ``run_key``, duplicates kept, in key order."""
    with target.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT row_id FROM barq_journal WHERE migration_id = :m AND table_name = :t"
                " ORDER BY row_id"
            ),
            {"m": run_key, "t": table},
        )
        return [int(r) for (r,) in found]


def moved(target: Target, table: str = "Items") -> list[int]:
    """The rows the step moved: in the target tenant 9, each exactly once (Hits = 1)."""
    found = rows(target, table)
    assert all(hits in (0, 1) for _, _, hits in found), "a row was moved twice"
    assert all((tenant == 9) == (hits == 1) for _, tenant, hits in found)
    return [i for i, _, hits in found if hits == 1]


def add_item(target: Target, key: int, tenant: int = 1) -> None:
    with target.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO Items (Id, TenantId) VALUES (:id, :tenant)"),
            {"id": key, "tenant": tenant},
        )


def test_each_batch_journals_exactly_the_keys_it_updated(target: Target) -> None:
    moving = make_items(target)
    result, reports = run(target, job(journalled()))
    assert result.finished and result.rows_done == 40
    assert [r.rows for r in reports] == [7, 7, 7, 7, 7, 5]
    assert moved(target) == journal(target) == moving
    with target.engine.connect() as conn:
        other = conn.execute(text("SELECT COUNT(*) FROM barq_journal WHERE table_name <> 'Items'"))
        assert other.scalar() == 0


def test_rows_joining_the_source_tenant_between_batches_are_moved_and_journalled_or_neither(
    target: Target,
) -> None:
    """After each batch a row joins the source tenant ahead of the checkpoint (a later batch
    moves it, and journals it) and one behind it (nothing moves it, nothing journals it)."""
    moving = make_items(target)
    ahead, behind = [], []

    def arrive(report: BatchReport) -> None:
        last = report.last_key
        assert last is not None
        if len(ahead) == 4:  # else the batches would never run out of rows
            return
        # free keys: make_items' keys are 3i or 3i + 1
        ahead.append(last + 2 if last % 3 == 0 else last + 1)
        behind.append(last - 1 if last % 3 == 0 else last - 2)
        add_item(target, ahead[-1])
        add_item(target, behind[-1])

    result = run_batches(
        target,
        job(journalled()),
        should_stop=lambda: False,
        on_batch=arrive,
        now=lambda: NOW,
    )
    assert result.finished and ahead
    still_there = {i for i, tenant, _ in rows(target) if tenant == 1}
    assert set(behind) <= still_there and not set(ahead) & still_there
    assert moved(target) == journal(target) == sorted({*moving, *ahead})
    assert result.rows_done == len(journal(target))


def test_rows_inserted_concurrently_are_moved_and_journalled_or_neither(target: Target) -> None:
    """Another session keeps adding source-tenant rows (all over the key range) while the step
    runs: whatever it managed to add, the rows journalled are exactly the rows moved."""
    make_items(target, n=600)
    target.prepare()
    started, stop = threading.Event(), threading.Event()
    added: list[int] = []
    failed: list[BaseException] = []

    def inserter() -> None:
        key = 0
        try:
            started.wait(30)
            while not stop.is_set():
                key += 1
                candidate = key * 3 + 2  # never one of make_items' keys
                try:
                    add_item(target, candidate)
                except sa_exc.OperationalError:  # SQLite: the batch held the lock too long
                    continue
                added.append(candidate)
        except BaseException as exc:
            failed.append(exc)

    def on_batch(_: BatchReport) -> None:
        started.set()

    thread = threading.Thread(target=inserter)
    thread.start()
    try:
        result = run_batches(
            target,
            job(journalled(settings=FIXED.model_copy(update={"size": 20, "min": 20, "max": 20}))),
            should_stop=lambda: False,
            on_batch=on_batch,
            now=lambda: NOW,
        )
    finally:
        started.set()
        stop.set()
        thread.join(30)
    assert not failed, failed
    assert result.finished and added, "the other session added no row while the step ran"
    assert moved(target) == journal(target)
    assert result.rows_done == len(journal(target))


def test_a_batch_that_does_not_commit_journals_nothing(target: Target) -> None:
    """When the checkpoint write fails (as a crash between the two would), the batch's update
    and its journal rows roll back together; the resumed run journals each key once."""
    moving = make_items(target)
    j = job(journalled())
    target.prepare()
    fail_checkpoint_write(target, at_batch=3)
    with pytest.raises(Exception, match="simulated crash"):
        run(target, j)
    assert moved(target) == journal(target) == moving[:14]
    with target.engine.begin() as conn:
        suffix = " ON barq_checkpoints" if target.dialect.name == "postgresql" else ""
        conn.execute(text("DROP TRIGGER crash" + suffix))
    result, _ = run(target, j)
    assert result.finished and (result.rows_done, result.batches) == (40, 6)
    assert moved(target) == journal(target) == moving
    assert (checkpoint(target, j)["rows_done"], len(journal(target))) == (40, 40)


def test_a_stopped_run_resumes_without_gaps_or_duplicates(target: Target) -> None:
    moving = make_items(target)
    j = job(journalled())
    first, _ = run(target, j, stop_after=2)
    assert not first.finished and journal(target) == moving[:14]
    second, _ = run(target, j)
    assert second.finished and moved(target) == journal(target) == moving


def test_two_tables_and_two_runs_keep_their_journals_apart(target: Target) -> None:
    moving = make_items(target, "Items")
    make_items(target, "Twin")
    run(target, job(journalled("Items")))
    run(target, job(journalled("Twin"), step="twin", run_key="m-2"))
    assert journal(target, "m-1", "Items") == journal(target, "m-2", "Twin") == moving
    assert journal(target, "m-1", "Twin") == journal(target, "m-2", "Items") == []


def test_journalled_only_changes_exactly_the_keys_the_run_journalled(target: Target) -> None:
    """A restore over ``TenantId = :t`` with ``journalled_only`` moves back the journalled
    rows only: not a row that was already in the target tenant, nor one journalled by another
    run, though its batches (over every target-tenant row) end at other keys than the run's."""
    moving = make_items(target)  # tenant 1: every third row; tenant 5: the others
    with target.engine.begin() as conn:
        conn.execute(text("UPDATE Items SET TenantId = 9 WHERE TenantId = 5 AND Id % 2 = 0"))
    resident = [i for i, tenant, _ in rows(target) if tenant == 9]
    run(target, job(journalled()))
    assert journal(target) == moving
    other = resident[:5]  # journalled by another run, never moved by this one
    with target.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO barq_journal_batches VALUES ('m-2', 'Items', :a, :b, :ids)"),
            {
                "a": other[0],
                "b": other[-1],
                "ids": other if target.dialect.name == "postgresql" else json.dumps(other),
            },
        )
    restore = BatchPlan(
        table="Items",
        key="Id",
        where_sql="TenantId = :t",
        set_sql="Hits = Hits - 1, TenantId = :s",
        journalled_only="barq_journal",
        settings=FIXED,
    )
    restoring = job(restore, step="restore", run_key="r-1", params={"migration_id": "m-1"})
    assert remaining(target, restoring) == (0, len(moving))  # the progress figures
    report, _ = run(target, restoring, stop_after=3)
    assert not report.finished
    assert remaining(target, restoring) == (report.rows_done, len(moving) - report.rows_done)
    report, _ = run(target, restoring)
    assert report.finished and report.rows_done == len(moving)
    after = {i: (tenant, hits) for i, tenant, hits in rows(target)}
    assert all(after[i] == (1, 0) for i in moving)
    assert sorted(i for i, (tenant, _) in after.items() if tenant == 9) == resident


def test_an_earlier_one_row_per_key_journal_is_folded_into_batches(target_url: str) -> None:
    """A target journalled by an earlier version (a barq_journal table, one row per key)
    keeps every key: they move into barq_journal_batches, read through the view."""
    target = Target.connect("old", target_url)
    try:
        with target.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE barq_journal (migration_id VARCHAR(64), table_name"
                    " VARCHAR(100), row_id BIGINT, PRIMARY KEY (migration_id, table_name, row_id))"
                )
            )
            conn.execute(
                text("INSERT INTO barq_journal VALUES ('old', 'Tasks', :k)"),
                [{"k": k} for k in range(1, 120002)],
            )
            conn.execute(text("INSERT INTO barq_journal VALUES ('old', 'Users', 7)"))
        target.prepare()
        Target.connect("again", target_url).prepare()  # idempotent
        assert journal(target, "old", "Tasks") == list(range(1, 120002))
        assert journal(target, "old", "Users") == [7]
        with target.engine.connect() as conn:
            kinds = (
                "SELECT relkind FROM pg_class WHERE relname = :n"
                if target.dialect.name == "postgresql"
                else "SELECT substr(type, 1, 1) FROM sqlite_master WHERE name = :n"
            )
            assert conn.execute(text(kinds), {"n": "barq_journal"}).scalar_one() == "v"
            batches = "SELECT COUNT(*) FROM barq_journal_batches WHERE migration_id = 'old'"
            assert conn.execute(text(batches)).scalar_one() == 4
    finally:
        target.engine.dispose()


def test_sqlite_refuses_a_batch_whose_journal_and_update_disagree(sqlite_url: str) -> None:
    """SQLite journals with an INSERT ... SELECT just before the UPDATE: should they see
    different rows (here a trigger moves a row away in between), the batch rolls back."""
    target = Target.connect("test", sqlite_url)
    try:
        moving = make_items(target)
        target.prepare()
        with target.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TRIGGER steal AFTER INSERT ON barq_journal_batches WHEN"
                    f" {moving[9]} BETWEEN NEW.first_id AND NEW.last_id"
                    f" BEGIN UPDATE Items SET TenantId = 5 WHERE Id = {moving[9]}; END"
                )
            )
        with pytest.raises(RuntimeError, match="journalled 7 rows but updated 6"):
            run(target, job(journalled()))
        assert moved(target) == journal(target) == moving[:7]
    finally:
        target.engine.dispose()


def test_only_an_update_can_journal() -> None:
    plan = BatchPlan(
        table="Items",
        key="Id",
        insert_into="Copy",
        insert_columns=("Id",),
        insert_select_sql="Id",
        journal="barq_journal",
    )
    with pytest.raises(ValueError, match="only an update can journal"):
        batch_sql(dialect_for("sqlite"), plan)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_the_journalled_update_binds_the_migration_and_names_the_table(dialect: str) -> None:
    statements = batch_sql(dialect_for(dialect), journalled())
    assert statements.journalled
    sql = "\n".join(s for s in (statements.journal, statements.change) if s)
    assert ":migration_id" in sql and "'Items'" in sql and "barq_journal" in sql
    assert (statements.journal is None) == (dialect != "sqlite")
    plain = batch_sql(dialect_for(dialect), move())
    assert plain.journal is None and not plain.journalled and "barq_journal" not in plain.change


@pytest.mark.postgres
@pytest.mark.crash
def test_sigkill_at_random_moments_leaves_no_gap_or_duplicate_in_the_journal(
    pg_url: str,
) -> None:
    """Killed (SIGKILL) mid-run again and again, the journalled step ends with every row moved
    once and journalled once: no batch that died journalled anything."""
    target = Target.connect("kill", pg_url)
    target.prepare()
    with target.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(text("INSERT INTO Items SELECT g, 1, 0 FROM generate_series(1, 10000) g"))
    command = [sys.executable, "-m", "tests.batch_worker", pg_url, "Items", "kill-j", "journal"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    chance = random.Random(20251129)
    for kill in range(3):
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        first = _line(proc)
        assert not first.startswith("finished"), f"finished before kill {kill + 1}"
        time.sleep(chance.uniform(0, 0.04))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with target.engine.connect() as conn:
            done = conn.execute(
                text("SELECT rows_done FROM barq_checkpoints WHERE migration_id = 'kill-j'")
            ).scalar_one()
        assert len(journal(target, "kill-j")) == done == len(moved_items(target))
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == "finished 10000"
    with target.engine.connect() as conn:
        hits = conn.execute(text("SELECT Hits, TenantId, COUNT(*) FROM Items GROUP BY 1, 2"))
        assert [tuple(r) for r in hits] == [(1, 2, 10000)]
    assert journal(target, "kill-j") == list(range(1, 10001))
    target.engine.dispose()


def moved_items(target: Target) -> list[int]:
    """Rows of Items moved to tenant 2 (the batch worker's target), each exactly once."""
    with target.engine.connect() as conn:
        found = conn.execute(text("SELECT Id, Hits FROM Items WHERE TenantId = 2 ORDER BY Id"))
        pairs = [(int(i), int(h)) for i, h in found]
    assert all(h == 1 for _, h in pairs)
    return [i for i, _ in pairs]
