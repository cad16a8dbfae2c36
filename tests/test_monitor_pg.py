"""The blocking monitor on a real PostgreSQL target, through the in-process bot and the
loopback Slack: a run blocked by another session is announced with the blocker's details and
closed with its duration once the lock is released; a run that blocks another session is
throttled (smaller batches), then paused at the limit with a page."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bot.adapters.targets.batches import BatchReport
from bot.domain.lifecycle import State
from bot.domain.records import Migration
from bot.executors import batch as batch_executor
from tests import harness
from tests.harness import MIGRATIONS, Harness

pytestmark = pytest.mark.postgres

ITEMS = "CREATE TABLE Items (Id INTEGER PRIMARY KEY, Value INTEGER NOT NULL, Hits INTEGER)"
HITS = """
name: count-items
description: add one hit to every item, in small batches
targets: [staging]
steps:
  - name: hit
    kind: batch
    table: Items
    key: Id
    update: Hits = Hits + 1{slow}
    batch: {{size: 10, min: 10, max: 10, budget_ms: 60000}}
    timeout: 60
"""
TOUCH = """
name: touch-one
description: one statement on one row
targets: [staging]
steps:
  - name: touch
    kind: sql
    sql: UPDATE Items SET Hits = Hits + 1 WHERE Id = 25
    timeout: 60
"""
# each batch statement sleeps, so each batch holds its row locks that long
SLOW = " + (SELECT 0 FROM pg_sleep(0.25))"
MONITOR = {
    "poll_seconds": 0.1,
    "throttle_after_seconds": 0.5,
    "pause_after_seconds": 2.0,
    "clear_polls": 8,
    "max_wait_seconds": 0.2,
}


class RecordingPager:
    """A Pager that remembers what it was asked to page."""

    def __init__(self) -> None:
        self.triggered: list[tuple[int, str, dict[str, Any]]] = []

    def trigger(self, m: Migration, reason: str, details: dict[str, Any], now: datetime) -> None:
        self.triggered.append((m.id, reason, details))

    def acknowledge(self, m: Migration, user: str, now: datetime) -> None:
        """Nobody clicks Acknowledge in these tests."""

    def resolve(self, m: Migration, why: str, now: datetime) -> None:
        """A paused run is not resolved; nothing to record."""

    def change(self, m: Migration, summary: str, now: datetime) -> None:
        """Change events (start, finish) are the paging tests' concern."""


@pytest.fixture
def items(pg_url: str) -> Iterator[str]:
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(ITEMS))
        conn.execute(text("INSERT INTO Items SELECT i, 0, 0 FROM generate_series(1, 100) AS s(i)"))
    engine.dispose()
    yield pg_url


async def _bot(tmp_path: Path, url: str, slow: str) -> Harness:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "count-items.yaml").write_text(HITS.format(slow=slow))
    (folder / "touch-one.yaml").write_text(TOUCH)
    targets = harness.policies(url)
    targets["staging"]["monitor"] = MONITOR
    return await harness.start(tmp_path, targets, folder)


@pytest.fixture
async def slow(tmp_path: Path, items: str) -> AsyncIterator[Harness]:
    bot = await _bot(tmp_path, items, SLOW)
    yield bot
    await bot.close()


def _episode(h: Harness, word: str) -> dict[str, Any] | None:
    """The reply in a run's thread whose text has ``word``, if posted."""
    for message in h.slack.messages_in(MIGRATIONS):
        if message.get("thread_ts") and word in json.dumps(message["blocks"]):
            return message
    return None


def _other_session(url: str, name: str) -> Any:
    engine = create_engine(url, poolclass=NullPool, connect_args={"application_name": name})
    return engine, engine.connect()


async def test_a_blocked_run_is_announced_with_the_blocker_and_closed_when_released(
    slow: Harness,
) -> None:
    """Another session holds a row the third batch needs: within 10 s the run's thread names
    that session (pid, login, host, program, statement) and the wait; once it lets go, the
    same message says how long the run was blocked (the run goes on, slowly enough for the
    monitor to see it clear), and the run finishes."""
    h = slow
    url = h.bot.service.targets["staging"].target.engine.url.render_as_string(False)
    engine, holder = _other_session(url, "nightly-report")
    pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
    holder.execute(text("UPDATE Items SET Value = 1 WHERE Id = 25"))  # held, not committed
    service = h.bot.service
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    await service.approve(m.id, "U0BOB", m.plan.hash)
    try:
        alert = await h.slack.wait_for(lambda s: _episode(h, "is blocked"), timeout=10)
        shown = json.dumps(alert["blocks"])
        assert f"#{m.id} is blocked, waiting for" in shown
        assert f"by session {pid} (login postgres, host" in shown
        assert "program nightly-report" in shown
        assert "UPDATE Items SET Value = 1 WHERE Id = 25" in shown
        assert "UPDATE Lock:transactionid" in shown
        assert h.bot.store.get(m.id).state is State.RUNNING
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    closed = await h.slack.wait_for(lambda s: _episode(h, "was blocked for"), timeout=10)
    assert closed["ts"] == alert["ts"], "the same message, updated in place"
    assert re.search(r"was blocked for \d+\.\d s; cleared\.", json.dumps(closed["blocks"]))
    await h.bot.service.wait_idle()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    assert h.count("staging", "SELECT COUNT(*) FROM Items WHERE Hits = 1") == 100
    replies = [x for x in h.slack.messages_in(MIGRATIONS) if "blocked" in json.dumps(x["blocks"])]
    assert len(replies) == 1, "one message per episode, not one per poll"


async def test_a_blocked_sql_step_is_announced_too(slow: Harness) -> None:
    """A sql step's transaction is the run's own session as well."""
    h = slow
    url = h.bot.service.targets["staging"].target.engine.url.render_as_string(False)
    engine, holder = _other_session(url, "hand-fix")
    pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
    holder.execute(text("UPDATE Items SET Value = 2 WHERE Id = 25"))
    m, _ = await h.bot.service.request("U0ALICE", "touch-one", {}, "staging")
    await h.bot.service.approve(m.id, "U0BOB", m.plan.hash)
    try:
        alert = await h.slack.wait_for(lambda s: _episode(h, "is blocked"), timeout=10)
        assert f"by session {pid} (login postgres" in json.dumps(alert["blocks"])
        assert "program hand-fix" in json.dumps(alert["blocks"])
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    await h.bot.service.wait_idle()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    closed = await h.slack.wait_for(lambda s: _episode(h, "was blocked for"), timeout=10)
    assert closed["ts"] == alert["ts"]


def _keep_waiting(url: str, stop: threading.Event) -> threading.Thread:
    """Another session that asks again and again for a SHARE lock on Items (it waits while a
    batch of the run holds its ROW EXCLUSIVE lock), until ``stop``."""

    def loop() -> None:
        engine, conn = _other_session(url, "share-locker")
        try:
            while not stop.is_set():
                conn.execute(text("LOCK TABLE Items IN SHARE MODE"))
                conn.commit()
                stop.wait(0.02)
        finally:
            conn.close()
            engine.dispose()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


async def test_a_run_that_blocks_others_is_throttled_then_paused_and_paged(
    slow: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = slow
    pager = RecordingPager()
    h.bot.service.engine.pager = pager
    reports: list[BatchReport] = []
    real = batch_executor.run_batches

    def recorded(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
        def note(report: BatchReport) -> None:
            reports.append(report)
            on_batch(report)

        return real(*args, on_batch=note, **kwargs)

    monkeypatch.setattr(batch_executor, "run_batches", recorded)
    url = h.bot.service.targets["staging"].target.engine.url.render_as_string(False)
    stop = threading.Event()
    service = h.bot.service
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    waiter = _keep_waiting(url, stop)
    try:
        await service.approve(m.id, "U0BOB", m.plan.hash)
        await h.slack.wait_for(lambda s: h.bot.store.get(m.id).state is State.PAUSED, timeout=20)
    finally:
        stop.set()
    waiter.join(timeout=10)
    paused = h.bot.store.get(m.id)
    rows = [r.rows for r in reports]
    assert rows[0] == 10 and min(rows) < 10, f"the batches shrink: {rows}"
    assert sum(rows) < 100, "paused before the end"
    assert len(pager.triggered) == 1
    (migration_id, reason, details) = pager.triggered[0]
    assert migration_id == m.id and "blocked other sessions" in reason
    assert details["blocked_sessions"] and details["step"] == "1. hit" and details["rows"] > 0
    actions = [a.action for a in h.bot.store.audit_trail(m.id)]
    assert actions.index("blocking-pause") < actions.index("pause")
    assert paused.state is State.PAUSED and not paused.pause_requested
    closed = await h.slack.wait_for(lambda s: _episode(h, "blocked other sessions for"), timeout=10)
    shown = json.dumps(closed["blocks"])
    assert "; the run paused at the limit." in shown
    history = [json.dumps(u["blocks"]) for u in closed["updates"]]
    assert any("Throttled to" in u for u in history), "throttled before the limit"
    assert any("on-call paged" in u for u in history)
