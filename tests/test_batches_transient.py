"""Transient errors retry the same batch; anything else fails at once.

The conflicts are real: a second session on the same PostgreSQL database provokes a deadlock,
a serialization failure and a lock timeout; SQLite gets a "database is locked".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from bot.adapters.targets import retries
from bot.adapters.targets.batches import BatchJob, BatchReport, BatchResult, run_batches
from bot.adapters.targets.target import Target
from bot.domain.batching import BatchSettings
from bot.domain.plan import BatchPlan

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TENS = BatchSettings(size=10, min=10, max=10)  # batches [1..10] [11..20] [21..30]
LOGGER = "bot.adapters.targets.batches"


@pytest.fixture
def pg(pg_url: str) -> Iterator[Target]:
    target = Target(
        "pg", create_engine(pg_url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    )
    _items(target)
    yield target
    target.engine.dispose()


def _items(target: Target) -> None:
    with target.engine.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(text("INSERT INTO Items VALUES (:i, 1, 0)"), [{"i": i} for i in range(1, 31)])


def _hits(target: Target) -> list[int]:
    with target.engine.connect() as conn:
        return [int(h) for h in conn.execute(text("SELECT Hits FROM Items ORDER BY Id")).scalars()]


def _job(plan: BatchPlan, **kw: Any) -> BatchJob:
    kw.setdefault("timeout", 30)
    return BatchJob("m-7", "bump", "", plan, {"migration_id": "m-7"}, **kw)


def _bump(**kw: Any) -> BatchPlan:
    kw.setdefault("set_sql", "Hits = Hits + 1")
    return BatchPlan(table="Items", key="Id", settings=TENS, **kw)


def _run(target: Target, job: BatchJob, **kw: Any) -> tuple[BatchResult, list[BatchReport]]:
    reports: list[BatchReport] = []
    on_batch = kw.pop("on_batch", None)

    def record(report: BatchReport) -> None:
        reports.append(report)
        if on_batch is not None:
            on_batch(report)

    result = run_batches(
        target, job, should_stop=lambda: False, on_batch=record, now=lambda: NOW, **kw
    )
    return result, reports


def _retries_logged(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert all("m-7 step bump" in line for line in lines), lines
    return [line for line in lines if f": {kind}, retry" in line]


def _before_each_retry(monkeypatch: pytest.MonkeyPatch, wait: Callable[[int], None]) -> None:
    """Call ``wait(attempt)`` where the retry loop waits before retry ``attempt``."""
    monkeypatch.setattr(retries, "wait_before_retry", wait)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The retries waited for, by number, in order."""
    numbers: list[int] = []
    _before_each_retry(monkeypatch, numbers.append)
    return numbers


def _wait_until(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.postgres
def test_deadlock_victim_retries_its_batch(pg: Target, caplog: pytest.LogCaptureFixture) -> None:
    """Chosen as deadlock victim (40P01) in its second batch, the runner retries that batch
    and ends with every row changed exactly once."""
    caplog.set_level(logging.WARNING, LOGGER)
    other_engine = create_engine(pg.engine.url, poolclass=NullPool)
    holding, failures = threading.Event(), []

    def other_session() -> None:
        try:
            with other_engine.begin() as conn, other_engine.connect() as monitor:
                # The runner's session keeps the default 1 s, so it detects the cycle first.
                conn.execute(text("SET deadlock_timeout = '10s'"))
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                conn.execute(text("SELECT Id FROM Items WHERE Id = 15 FOR UPDATE"))
                holding.set()
                _wait_until(lambda: _blocked_by(monitor, pid), "the runner to wait on row 15")
                # The runner's batch holds rows 11..14: this closes the cycle.
                conn.execute(text("SELECT Id FROM Items WHERE Id = 12 FOR UPDATE"))
        except Exception as exc:
            failures.append(exc)
            holding.set()

    thread = threading.Thread(target=other_session)
    thread.start()
    holding.wait(20)
    result, reports = _run(pg, _job(_bump()))
    thread.join(30)
    other_engine.dispose()
    assert failures == []
    assert result.finished and result.retries >= 1
    assert reports[0].retries == 0 and reports[1].retries >= 1
    assert _hits(pg) == [1] * 30 and result.rows_done == 30 and result.batches == 3
    assert _retries_logged(caplog, "deadlock")


def _blocked_by(monitor: Connection, pid: Any) -> bool:
    waiting = monitor.execute(
        text("SELECT COUNT(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
        {"pid": pid},
    ).scalar()
    monitor.commit()  # a fresh snapshot of the activity view each time
    return bool(waiting)


@pytest.mark.postgres
def test_serialization_failure_retries_its_batch(
    pg: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """At REPEATABLE READ, a row changed by another session after the batch's snapshot fails
    the batch with 40001; the retry reads the row anew and applies it once."""
    caplog.set_level(logging.WARNING, LOGGER)
    reading, committed = threading.Event(), threading.Event()
    calls: list[int] = []

    def bump(row: dict[str, Any]) -> dict[str, Any]:
        calls.append(row["Id"])
        if row["Id"] == 11 and calls.count(11) == 1:
            reading.set()  # the batch's snapshot is taken and its rows are read
            assert committed.wait(20)
        return {"Hits": row["Hits"] + 1}

    def other_session() -> None:
        assert reading.wait(20)
        with pg.engine.begin() as conn:
            conn.execute(text("UPDATE Items SET TenantId = 2 WHERE Id = 15"))
        committed.set()

    thread = threading.Thread(target=other_session)
    thread.start()
    plan = _bump(set_sql=None, hook="bump.py:bump", read=("Id", "Hits"), write=("Hits",))
    result, reports = _run(pg, _job(plan, isolation="REPEATABLE READ"), hook=bump)
    thread.join(30)
    assert committed.is_set()
    assert result.finished and result.retries == 1 and reports[1].retries == 1
    assert calls.count(11) == 2 and calls.count(21) == 1  # batch 2 ran twice, batch 3 once
    assert _hits(pg) == [1] * 30
    assert len(_retries_logged(caplog, "serialization")) == 1


@pytest.mark.postgres
def test_lock_timeout_retries_after_backoff(
    pg: Target, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that cannot get its row locks within the timeout is retried after the backoff."""
    caplog.set_level(logging.WARNING, LOGGER)
    holder = pg.engine.connect()
    waits: list[int] = []

    def hold_row_15(report: BatchReport) -> None:
        if report.batches == 1:
            holder.execute(text("UPDATE Items SET TenantId = 3 WHERE Id = 15"))

    def wait(attempt: int) -> None:
        waits.append(attempt)
        holder.rollback()  # released while the runner waits
        time.sleep(0.01)

    _before_each_retry(monkeypatch, wait)
    result, reports = _run(pg, _job(_bump(), timeout=0.3), on_batch=hold_row_15)
    holder.close()
    assert waits == [1] and result.retries == 1 and reports[1].retries == 1
    assert _hits(pg) == [1] * 30
    assert len(_retries_logged(caplog, "lock_timeout")) == 1


@pytest.mark.postgres
def test_transient_errors_give_up_after_the_plans_retries(pg: Target, waits: list[int]) -> None:
    holder = pg.engine.connect()
    holder.execute(text("UPDATE Items SET TenantId = 3 WHERE Id = 5"))
    plan = BatchPlan(table="Items", key="Id", set_sql="Hits = Hits + 1", settings=TENS, retries=2)
    with pytest.raises(OperationalError) as info:
        _run(pg, _job(plan, timeout=0.2))
    holder.close()
    assert waits == [1, 2]
    assert pg.dialect.classify(info.value) == "lock_timeout"
    assert _hits(pg) == [0] * 30


@pytest.mark.postgres
def test_permanent_error_fails_at_once(
    pg: Target, caplog: pytest.LogCaptureFixture, waits: list[int]
) -> None:
    """A mistake in the runbook's SQL is not retried; the database's error comes out as is."""
    caplog.set_level(logging.WARNING, LOGGER)
    plan = _bump(set_sql="NoSuchColumn = 1")
    with pytest.raises(ProgrammingError) as info:
        _run(pg, _job(plan))
    assert getattr(info.value.orig, "sqlstate", None) == "42703"  # undefined column
    assert "nosuchcolumn" in str(info.value.orig)
    assert waits == [] and [r for r in caplog.records if r.name == LOGGER] == []
    assert _hits(pg) == [0] * 30


def test_sqlite_database_locked_retries(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite, another writer's lock ("database is locked") is transient too."""
    target = Target("lite", create_engine(sqlite_url, connect_args={"timeout": 0.05}))
    _items(target)
    holder = sqlite3.connect(target.engine.url.database or "", isolation_level=None)
    waits: list[int] = []

    def lock_database(report: BatchReport) -> None:
        if report.batches == 1:
            holder.execute("BEGIN IMMEDIATE")

    def wait(attempt: int) -> None:
        waits.append(attempt)
        holder.execute("ROLLBACK")

    _before_each_retry(monkeypatch, wait)
    result, _ = _run(target, _job(_bump()), on_batch=lock_database)
    holder.close()
    target.engine.dispose()
    assert waits == [1] and result.retries == 1 and _hits(target) == [1] * 30


@pytest.mark.postgres
def test_a_sql_step_retries_its_whole_transaction_and_runs_once(
    pg: Target, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sql step that cannot get its row locks in time is retried whole after the backoff;
    once committed with its checkpoint, running it again changes nothing."""
    caplog.set_level(logging.WARNING, "bot.adapters.targets.target")
    holder = pg.engine.connect()
    holder.execute(text("UPDATE Items SET TenantId = 3 WHERE Id = 15"))
    waits: list[int] = []

    def wait(attempt: int) -> None:
        waits.append(attempt)
        holder.rollback()  # released while the step waits
        time.sleep(0.01)

    _before_each_retry(monkeypatch, wait)
    step = {"run_key": "m-7", "step": "bump-all", "now": NOW}
    bump = "UPDATE Items SET Hits = Hits + 1"
    rows = pg.run_sql(bump, {}, timeout=0.3, retries=2, **step)
    holder.close()
    assert rows == 30 and waits == [1]
    assert _hits(pg) == [1] * 30
    assert "m-7 step bump-all: lock_timeout, retry 1 of 2" in caplog.text
    assert pg.run_sql(bump, {}, timeout=5, **step) == 30, "the committed step's row count"
    assert _hits(pg) == [1] * 30


def test_the_backoff_doubles_up_to_five_seconds_and_tests_wait_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert retries.backoff_seconds(3) == 0.0  # tests/conftest.py turned the waits off
    monkeypatch.setattr(retries, "_testing", False)
    assert [retries.backoff_seconds(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
