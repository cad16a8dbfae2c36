"""The keyset batch runner on real SQLite and PostgreSQL databases.

Most tests use Items(Id, TenantId, Hits) with the change ``Hits = Hits + 1``: a batch applied
twice shows as Hits = 2 and a skipped one as Hits = 0.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.adapters.targets.batches import (
    BatchJob,
    BatchReport,
    BatchResult,
    batch_sql,
    hook_digest,
    load_hook,
    remaining,
    run_batches,
)
from bot.adapters.targets.dialects import dialect_for
from bot.adapters.targets.target import Target
from bot.domain.batching import BatchSettings, next_size
from bot.domain.plan import BatchPlan
from bot.local import barq_schema
from tests import batch_worker

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIXED = BatchSettings(size=7, min=7, max=7)
REPO = Path(__file__).resolve().parent.parent

Hook = Callable[[dict[str, Any]], dict[str, Any] | None]


@pytest.fixture
def target(target_url: str) -> Iterator[Target]:
    t = Target.connect("test", target_url)
    yield t
    t.engine.dispose()


def make_items(target: Target, table: str = "Items", n: int = 120) -> list[int]:
    """Items with gaps in the keys; tenant 1 holds every third row. Returns tenant 1's ids."""
    ids = [i * 3 + (i % 2) for i in range(1, n + 1)]
    with target.engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (Id INTEGER PRIMARY KEY, TenantId INT NOT NULL,"
                " Hits INT NOT NULL DEFAULT 0)"
            )
        )
        conn.execute(
            text(f"INSERT INTO {table} (Id, TenantId) VALUES (:id, :tenant)"),
            [{"id": i, "tenant": 1 if k % 3 == 0 else 5} for k, i in enumerate(ids)],
        )
    return [i for k, i in enumerate(ids) if k % 3 == 0]


def move(table: str = "Items", settings: BatchSettings = FIXED, **change: Any) -> BatchPlan:
    """Move tenant :s to :t, counting applications in Hits (or another change)."""
    change = change or {"set_sql": "Hits = Hits + 1, TenantId = :t"}
    return BatchPlan(table=table, key="Id", where_sql="TenantId = :s", settings=settings, **change)


def job(plan: BatchPlan, step: str = "move", run_key: str = "m-1", **kw: Any) -> BatchJob:
    params = {"s": 1, "t": 9, "migration_id": run_key, **kw.pop("params", {})}
    return BatchJob(run_key, step, "", plan, params, timeout=30, **kw)


def run(
    target: Target, job: BatchJob, *, stop_after: int | None = None, hook: Hook | None = None
) -> tuple[BatchResult, list[BatchReport]]:
    reports: list[BatchReport] = []
    result = run_batches(
        target,
        job,
        should_stop=lambda: stop_after is not None and len(reports) >= stop_after,
        on_batch=reports.append,
        now=lambda: NOW,
        hook=hook,
    )
    return result, reports


def rows(target: Target, table: str = "Items") -> list[tuple[int, int, int]]:
    with target.engine.connect() as conn:
        found = conn.execute(text(f"SELECT Id, TenantId, Hits FROM {table} ORDER BY Id"))
        return [(int(a), int(b), int(c)) for a, b, c in found]


def checkpoint(target: Target, job: BatchJob) -> Any:
    key = {"migration_id": job.run_key, "step": job.step, "branch": job.branch}
    with target.engine.connect() as conn:
        return conn.execute(text(target.dialect.checkpoint_select_sql()), key).mappings().one()


def test_update_moves_exactly_the_matching_rows_once(target: Target) -> None:
    """Every matching row is changed exactly once; no other row is touched."""
    moving = make_items(target)
    before = rows(target)
    j = job(move())
    assert remaining(target, j) == (0, len(moving)) == (0, 40)
    result, reports = run(target, j)
    expected = [(i, 9, 1) if i in moving else (i, t, 0) for i, t, _ in before]
    assert rows(target) == expected
    assert result.finished and result.rows_done == 40 and result.retries == 0
    assert [r.rows for r in reports] == [7, 7, 7, 7, 7, 5]
    assert [r.last_key for r in reports] == [moving[k] for k in (6, 13, 20, 27, 34, 39)]
    assert [r.rows_done for r in reports] == [7, 14, 21, 28, 35, 40]
    assert result.batches == reports[-1].batches == 6
    # the longest transaction may be the last one, which finds nothing left and is not reported
    assert result.longest_batch_seconds >= max(r.seconds for r in reports) > 0
    cp = checkpoint(target, j)
    assert (cp["rows_done"], cp["batches"], bool(cp["done"])) == (40, 6, True)
    assert cp["last_key"] == moving[-1]
    assert remaining(target, j) == (40, 0)


def test_stopped_run_resumes_to_the_same_result(target: Target) -> None:
    """Stopped after k batches and run again, a step ends exactly like an uninterrupted run."""
    moving = make_items(target, "Items")
    make_items(target, "Twin")
    j = job(move("Items"))
    first, _ = run(target, j, stop_after=3)
    assert not first.finished and (first.rows_done, first.batches) == (21, 3)
    applied = set(moving[:21])
    assert [i for i, _, hits in rows(target) if hits] == sorted(applied)
    cp = checkpoint(target, j)
    assert (cp["last_key"], cp["rows_done"], cp["batches"]) == (moving[20], 21, 3)
    assert not cp["done"]
    assert remaining(target, j) == (21, 40 - 21), "done before the stop, and left"

    second, more = run(target, j)
    assert second.finished and [r.rows for r in more] == [7, 7, 5]
    assert (second.rows_done, second.batches) == (40, 3 + len(more))

    twin, _ = run(target, job(move("Twin"), step="twin"))
    assert rows(target, "Items") == rows(target, "Twin")
    assert all(hits == 1 for i, _, hits in rows(target) if i in moving)
    cp = checkpoint(target, j)
    assert (cp["rows_done"], cp["batches"]) == (twin.rows_done, twin.batches) == (40, 6)


def fail_checkpoint_write(target: Target, at_batch: int) -> None:
    """Make the checkpoint write of batch ``at_batch`` fail, as a crash between a batch's
    change and its checkpoint would (a trigger raising 'simulated crash')."""
    crash = {
        "sqlite": [
            "CREATE TRIGGER crash BEFORE UPDATE ON barq_checkpoints"
            f" WHEN NEW.batches = {at_batch}"
            " BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
        ],
        "postgresql": [
            "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.batches = {at_batch} THEN RAISE EXCEPTION 'simulated crash'; END IF;"
            " RETURN NEW; END $$",
            "CREATE TRIGGER crash BEFORE UPDATE ON barq_checkpoints"
            " FOR EACH ROW EXECUTE FUNCTION crash()",
        ],
    }[target.dialect.name]
    with target.engine.begin() as conn:
        for ddl in crash:
            conn.execute(text(ddl))


def test_a_batch_and_its_checkpoint_commit_together(target: Target) -> None:
    """When the checkpoint write fails (as a crash between the two would), the batch's change
    is rolled back with it; the next run redoes exactly that batch."""
    moving = make_items(target)
    j = job(move(set_sql="Hits = Hits + 1"))
    target.prepare()
    fail_checkpoint_write(target, at_batch=3)
    with pytest.raises(Exception, match="simulated crash"):
        run(target, j)
    assert [i for i, _, hits in rows(target) if hits] == moving[:14]
    assert checkpoint(target, j)["batches"] == 2
    with target.engine.begin() as conn:
        conn.execute(
            text(
                "DROP TRIGGER crash"
                + (" ON barq_checkpoints" * (target.dialect.name == "postgresql"))
            )
        )
    result, _ = run(target, j)
    assert result.finished and (result.rows_done, result.batches) == (40, 6)
    assert [i for i, _, hits in rows(target) if hits == 1] == moving
    assert all(hits in (0, 1) for _, _, hits in rows(target))


def test_two_runners_on_one_checkpoint_never_apply_a_batch_twice(target: Target) -> None:
    """A second runner of the same step (or a dying one whose COMMIT is in flight) waits on
    the checkpoint row's lock and carries on from what the first committed."""
    moving = make_items(target, n=600)
    j = job(move(set_sql="Hits = Hits + 1"))  # rows keep matching: a repeat would show
    target.prepare()  # once, as the engine does before it starts branches
    start = threading.Barrier(2, timeout=20)
    outcomes: list[tuple[BatchResult, list[BatchReport]] | BaseException] = []

    def runner() -> None:
        try:
            start.wait()
            outcomes.append(run(target, j))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(results) == 2, outcomes
    assert [i for i, _, hits in rows(target) if hits] == moving
    assert all(hits in (0, 1) for _, _, hits in rows(target))
    assert sum(r.rows for _, reports in results for r in reports) == len(moving) == 200
    assert {(res.rows_done, res.batches, res.finished) for res, _ in results} == {(200, 29, True)}


def test_a_run_stopped_before_its_first_batch_applies_nothing(target: Target) -> None:
    make_items(target)
    result, reports = run(target, job(move()), stop_after=0)
    assert not result.finished and reports == [] and result.rows_done == 0
    assert all(hits == 0 for _, _, hits in rows(target))


def test_a_done_checkpoint_applies_nothing(target: Target) -> None:
    """Once the checkpoint says done, the step is over even if rows match again."""
    make_items(target)
    j = job(move(set_sql="Hits = Hits + 1"))  # rows keep matching after the change
    run(target, j)
    with target.engine.begin() as conn:
        conn.execute(text("UPDATE Items SET Hits = 0"))
    again, reports = run(target, j)
    assert again.finished and reports == [] and (again.rows_done, again.batches) == (40, 6)
    assert all(hits == 0 for _, _, hits in rows(target))
    assert remaining(target, j) == (40, 0)


def test_insert_copies_each_matching_row_once(target: Target) -> None:
    moving = make_items(target)
    with target.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Archive (Id INTEGER PRIMARY KEY, TenantId INT, Hits INT)"))
    plan = move(
        insert_into="Archive",
        insert_columns=("Id", "TenantId", "Hits"),
        insert_select_sql="Id, :t, Hits + 100",
    )
    first, _ = run(target, job(plan), stop_after=2)
    second, _ = run(target, job(plan))
    assert (first.rows_done, second.rows_done, second.batches) == (14, 40, 6)
    assert rows(target, "Archive") == [(i, 9, 100) for i in moving]
    assert all(hits == 0 for _, _, hits in rows(target))  # the source is left alone


HOOK_SOURCE = '''
import itertools
import json


def reshape(row):
    """The runbook's User Profile Updates: legacy keys become the new preference shape."""
    if row["LegacyPreferences"] is None:
        return None
    old = json.loads(row["LegacyPreferences"])
    new = {"theme": "dark" if old.get("DarkMode") else "light", "language": old.get("Locale")}
    return {"Preferences": json.dumps(new), "LegacyPreferences": None}
'''


def users_plan(hooks: Path, **kw: Any) -> BatchPlan:
    (hooks / "prefs.py").write_text(HOOK_SOURCE)
    return BatchPlan(
        table="Users",
        key="Id",
        hook=kw.pop("hook", "prefs.py:reshape"),
        hook_digest=hook_digest(hooks, "prefs.py:reshape"),
        read=("LegacyPreferences",),
        write=("Preferences", "LegacyPreferences"),
        settings=BatchSettings(size=8, min=8, max=8),
        **kw,
    )


def users(target: Target) -> list[tuple[int, str | None, str | None]]:
    with target.engine.connect() as conn:
        found = conn.execute(text("SELECT Id, LegacyPreferences, Preferences FROM Users"))
        return sorted((int(i), a, b) for i, a, b in found)


def test_hook_reshapes_legacy_preferences(target: Target, tmp_path: Path) -> None:
    """A Python hook reshapes each row's JSON; rows it returns None for are left alone."""
    barq_schema.create_schema(target.engine)
    barq_schema.seed_demo(
        target.engine, tenants=2, users_per_tenant=30, tasks_per_tenant=1, now=NOW
    )
    before = users(target)
    legacy = [json.loads(a) for _, a, _ in before if a is not None]
    assert {p["DarkMode"] for p in legacy} == {True, False} and len(legacy) < len(before)
    plan = users_plan(tmp_path)
    hook = load_hook(tmp_path, plan)
    assert hook({"LegacyPreferences": '{"DarkMode": true, "Locale": "fr"}'}) == {
        "Preferences": '{"theme": "dark", "language": "fr"}',
        "LegacyPreferences": None,
    }
    j = BatchJob("m-2", "prefs", "", plan, {"migration_id": "m-2"}, timeout=30)
    result, reports = run(target, j, stop_after=3, hook=hook)
    assert not result.finished and result.rows_done == sum(r.rows for r in reports)
    result, _ = run(target, j, hook=hook)
    assert result.finished and result.rows_done == len(legacy)
    expected: list[tuple[int, None, dict[str, Any] | None]] = []
    for i, old, _ in before:
        if old is None:
            expected.append((i, None, None))
            continue
        prefs = json.loads(old)
        theme = "dark" if prefs["DarkMode"] else "light"
        expected.append((i, None, {"theme": theme, "language": prefs["Locale"]}))
    after = [(i, a, b if b is None else json.loads(b)) for i, a, b in users(target)]
    assert after == expected


def test_hook_writing_an_undeclared_column_is_refused(target: Target, tmp_path: Path) -> None:
    """A hook may only write its step's ``write`` columns; the batch rolls back."""
    make_items(target)
    plan = move(hook="x.py:f", read=("Hits",), write=("Hits",))

    def sneaky(row: dict[str, Any]) -> dict[str, Any]:
        return {"Hits": row["Hits"] + 1, "TenantId": 7, "Secret": 1}

    j = job(plan)
    with pytest.raises(ValueError, match=r"'Secret', 'TenantId'.*may only write Hits"):
        run(target, j, hook=sneaky)
    assert all(hits == 0 for _, _, hits in rows(target))
    assert checkpoint(target, j)["batches"] == 0


def test_hook_may_write_some_of_its_columns(target: Target) -> None:
    """Returning a subset of ``write`` sets only those columns; an empty dict changes nothing."""
    moving = make_items(target)
    plan = move(hook="x.py:f", read=("Hits",), write=("TenantId", "Hits"))

    def some(row: dict[str, Any]) -> dict[str, Any]:
        return {} if row["Hits"] else {"Hits": 1}

    with target.engine.begin() as conn:
        conn.execute(text("UPDATE Items SET Hits = 5 WHERE Id = :i"), {"i": moving[0]})
    result, _ = run(target, job(plan), hook=some)
    assert result.rows_done == 39
    assert [(t, h) for i, t, h in rows(target) if i in moving] == [(1, 5)] + [(1, 1)] * 39


def test_changed_hook_file_is_refused(tmp_path: Path) -> None:
    plan = users_plan(tmp_path)
    assert load_hook(tmp_path, plan)({"LegacyPreferences": None}) is None
    (tmp_path / "prefs.py").write_text(HOOK_SOURCE + "\n# edited after approval\n")
    with pytest.raises(ValueError, match="changed since the plan was approved"):
        load_hook(tmp_path, plan)
    unpinned = plan.model_copy(update={"hook_digest": ""})
    assert callable(load_hook(tmp_path, unpinned))


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ("prefs.py:missing", "has no function 'missing'"),
        ("other.py:reshape", "not found"),
        ("../prefs.py:reshape", "inside"),
    ],
)
def test_bad_hooks_are_refused(tmp_path: Path, hook: str, message: str) -> None:
    hooks = tmp_path / "runbooks"
    hooks.mkdir()
    (tmp_path / "prefs.py").write_text(HOOK_SOURCE)
    plan = users_plan(hooks).model_copy(update={"hook": hook, "hook_digest": ""})
    with pytest.raises(ValueError, match=message):
        load_hook(hooks, plan)


def test_batches_grow_while_they_are_fast(target: Target) -> None:
    """Far under the time budget, each batch is about 1.8 times the last, up to max."""
    make_items(target, n=3000)
    settings = BatchSettings(size=10, min=10, max=400, budget_ms=60_000)
    result, reports = run(target, job(move(settings=settings)))
    assert [r.next_size for r in reports] == [18, 32, 57, 102, 183, 329, 400, 400]
    assert [r.rows for r in reports] == [10, 18, 32, 57, 102, 183, 329, 269]
    assert result.rows_done == 1000


def test_batches_shrink_while_they_are_slow(target: Target) -> None:
    """Over the budget, batches halve down to min."""
    make_items(target)
    settings = BatchSettings(size=16, min=3, max=16, budget_ms=1)
    plan = move(settings=settings, hook="x.py:f", read=("Hits",), write=("Hits",))

    def slow(row: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.002)
        return {"Hits": row["Hits"] + 1}

    _, reports = run(target, job(plan), stop_after=4, hook=slow)
    assert [r.next_size for r in reports] == [8, 4, 3, 3]
    assert [r.rows for r in reports] == [16, 8, 4, 3]
    assert next_size(16, reports[0].seconds, settings) == 8


@pytest.mark.parametrize(
    "change",
    [
        {"table": "Items; DROP TABLE Items"},
        {"table": "Items i"},
        {"key": "Id--"},
        {"key": "dbo.Id"},
        {"set_sql": None, "insert_into": "Archive(Id)", "insert_columns": ("Id",)},
        {"set_sql": None, "insert_into": "Archive", "insert_columns": ("Id, Hits",)},
        {"set_sql": None, "insert_into": "Archive", "insert_columns": ()},
        {"set_sql": None, "hook": "x.py:f", "read": ("Hits;",), "write": ("Hits",)},
        {"set_sql": None, "hook": "x.py:f", "read": ("Hits",), "write": ("Hits = 0 --",)},
        {"set_sql": None},
    ],
)
def test_bad_identifiers_are_refused(target: Target, change: dict[str, Any]) -> None:
    """Identifiers are checked before any SQL runs; values are never interpolated."""
    make_items(target)
    fields = {"table": "Items", "key": "Id", "set_sql": "Hits = Hits + 1"} | change
    if "insert_into" in change:
        fields["insert_select_sql"] = "Id"
    plan = BatchPlan(**fields)
    for dialect in ("mssql", "postgresql", "sqlite"):
        with pytest.raises(ValueError):
            batch_sql(dialect_for(dialect), plan)
    with pytest.raises(ValueError):
        run(target, job(plan), hook=lambda row: None)
    assert all(hits == 0 for _, _, hits in rows(target))


def test_reserved_and_missing_parameters_are_refused(target: Target) -> None:
    make_items(target)
    with pytest.raises(ValueError, match=r"reserved.*_barq_next"):
        job(move(), params={"_barq_next": 5})
    with pytest.raises(ValueError, match=":t, which"):
        run(target, BatchJob("m-3", "move", "", move(), {"s": 1}, timeout=30))
    with pytest.raises(ValueError, match="isolation"):
        job(move(), isolation="READ SOMETIMES")


def test_a_runbook_parameter_named_like_the_dialects_binds_stays_its_own(target: Target) -> None:
    """The runner's own binds are ``_barq_`` names, so a ``:last_key`` parameter is safe."""
    moving = make_items(target)
    plan = BatchPlan(
        table="Items",
        key="Id",
        where_sql="TenantId = :last_key AND Id < :batch_size",
        set_sql="Hits = Hits + 1",
        settings=FIXED,
    )
    result, _ = run(target, job(plan, params={"last_key": 1, "batch_size": moving[10]}))
    assert result.rows_done == 10
    assert [i for i, _, hits in rows(target) if hits] == moving[:10]


# -- SIGKILL at random moments ---------------------------------------------------------------


def _line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the batch worker printed nothing"
    return proc.stdout.readline().strip()


@pytest.mark.postgres
@pytest.mark.crash
def test_sigkill_at_random_moments_never_applies_a_batch_twice(pg_url: str) -> None:
    """Killed (SIGKILL) mid-run again and again, the step still ends with every row changed
    exactly once, and the same data as a run that was never interrupted."""
    target = Target.connect("kill", pg_url)
    with target.engine.begin() as conn:
        for table in ("Items", "Twin"):
            conn.execute(text(f"CREATE TABLE {table} (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
            conn.execute(
                text(f"INSERT INTO {table} SELECT g, 1, 0 FROM generate_series(1, 50000) AS g")
            )
    command = [sys.executable, "-m", "tests.batch_worker", pg_url, "Items", "kill-1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    chance, kills, done_at_kill = random.Random(20250301), 0, []
    while kills < 6:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        first = _line(proc)  # killing after a committed batch puts the kill among the batches
        assert not first.startswith("finished"), f"finished before kill {kills + 1}"
        time.sleep(chance.uniform(0, 0.06))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        done_at_kill.append(int(first.split()[1]))
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().splitlines()[-1] == "finished 50000"
    assert all(a < b for a, b in itertools.pairwise(done_at_kill)), done_at_kill
    assert done_at_kill[-1] < 50000

    twin = batch_worker.move(pg_url, "Twin", "twin-1", quiet=True)
    assert twin.rows_done == 50000
    with target.engine.connect() as conn:
        hits = conn.execute(text("SELECT Hits, TenantId, COUNT(*) FROM Items GROUP BY 1, 2"))
        assert [tuple(r) for r in hits] == [(1, 2, 50000)]
        differ = conn.execute(
            text(
                "SELECT COUNT(*) FROM Items i FULL JOIN Twin t ON t.Id = i.Id"
                " WHERE i.Id IS NULL OR t.Id IS NULL OR i.Hits <> t.Hits"
                " OR i.TenantId <> t.TenantId"
            )
        )
        assert differ.scalar() == 0
        cp = conn.execute(
            text("SELECT rows_done, done FROM barq_checkpoints WHERE migration_id = 'kill-1'")
        )
        assert tuple(cp.one()) == (50000, True)
    target.engine.dispose()
