"""End to end with the real clock, on PostgreSQL: a window opens seconds after the approval,
the batch run is slower than the window, pauses at its end, waits, and resumes by itself in
the next window; every row is changed exactly once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.adapters import blocks
from bot.domain.lifecycle import State
from bot.errors import Refused
from tests import harness

ALICE, BOB = "U0ALICE", "U0BOB"
SLOW = """
name: slow-hits
description: add one hit to every item, 30 ms a row on the server
targets: [staging]
estimate: 1s
steps:
  - name: hit
    kind: batch
    table: items
    key: id
    update: hits = hits + 1 + 0 * length(CAST(pg_sleep(0.03) AS text))
    count: SELECT COUNT(*) FROM items
    batch: {size: 10, min: 10, max: 10, budget_ms: 200}
"""


def _local(at: object) -> str:
    return at.replace(tzinfo=None).isoformat(timespec="seconds")  # type: ignore[attr-defined]


async def test_a_window_ends_mid_run_and_the_next_one_finishes_it(
    tmp_path: Path, pg_url: str
) -> None:
    """Approved before its window: waits; starts when the window opens (woken, the poll is
    an hour); paused at the window's end at a batch boundary; resumed at the next window's
    opening; all 100 rows hit once."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g"))
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "slow-hits.yaml").write_text(SLOW)
    now0 = harness.now()
    first, second = now0 + timedelta(seconds=3), now0 + timedelta(seconds=9)
    targets = harness.policies(pg_url)
    targets["staging"]["windows"] = {
        "timezone": "UTC",
        "once": [
            {"start": _local(first), "duration": "2s"},
            {"start": _local(second), "duration": "60s"},
        ],
    }
    h = await harness.start(tmp_path, targets, runbooks, poll_seconds=3600)
    try:
        s = h.bot.service
        m, _ = await s.request(ALICE, "slow-hits", {}, "staging")
        await s.approve(m.id, BOB, m.plan.hash)
        assert s.store.get(m.id).state is State.APPROVED
        due = s.store.get(m.id).due_at
        assert due is not None and due.replace(microsecond=0) == first.replace(microsecond=0)

        def state() -> State:
            return h.bot.store.get(m.id).state

        await h.slack.wait_for(lambda _: state() is State.PAUSED, timeout=15)
        paused = s.store.get(m.id)
        assert paused.started_at is not None and paused.started_at >= due
        assert (paused.schedule or {}).get("window_paused")
        with engine.connect() as conn:
            done = conn.execute(text("SELECT COUNT(*) FROM items WHERE hits = 1")).scalar()
        assert done is not None and 0 < done < 100, "paused mid-run at a batch boundary"
        assert any(a.action == "window-end" for a in s.store.audit_trail(m.id))
        with pytest.raises(Refused, match="never outside one"):
            await s.resume(m.id, BOB)
        shown = blocks.progress(paused, s.store.step_runs(m.id), harness.now())
        assert "Waiting for a downtime window" in json.dumps(shown)

        await h.slack.wait_for(lambda _: state() is State.SUCCEEDED, timeout=30)
        trail = s.store.audit_trail(m.id)
        resumed = next(a for a in trail if a.action == "resume")
        assert resumed.at >= second.replace(microsecond=0)
        with engine.connect() as conn:
            hits = conn.execute(text("SELECT MIN(hits), MAX(hits) FROM items")).one()
        assert tuple(hits) == (1, 1), "every row changed exactly once"
    finally:
        await h.close()
        engine.dispose()


UNDONE = """
name: slow-hits
description: add one hit to every item, 30 ms a row on the server
targets: [staging]
estimate: 1s
steps:
  - name: hit
    kind: batch
    table: items
    key: id
    update: hits = hits + 1 + 0 * length(CAST(pg_sleep(0.03) AS text))
    count: SELECT COUNT(*) FROM items
    batch: {size: 10, min: 10, max: 10, budget_ms: 200}
rollback:
  - name: unhit
    kind: batch
    table: items
    key: id
    where: hits > 0
    update: hits = hits - 1
"""


async def test_on_window_end_rollback_stops_the_run_and_undoes_it(
    tmp_path: Path, pg_url: str
) -> None:
    """on_window_end: rollback: the run stops at the batch boundary after its window's end,
    ends failed (rolled back), and its rollback runs at once (approved by the configuration):
    the data is as before."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g"))
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "slow-hits.yaml").write_text(UNDONE)
    first = harness.now() + timedelta(seconds=3)
    targets = harness.policies(pg_url)
    targets["staging"]["windows"] = {
        "timezone": "UTC",
        "once": [{"start": _local(first), "duration": "2s"}],
        "on_window_end": "rollback",
    }
    h = await harness.start(tmp_path, targets, runbooks, poll_seconds=3600)
    try:
        s = h.bot.service
        m, _ = await s.request(ALICE, "slow-hits", {}, "staging")
        await s.approve(m.id, BOB, m.plan.hash)

        def undone() -> bool:
            rollbacks = h.bot.store.rollbacks_of(m.id)
            return bool(rollbacks) and rollbacks[0].state is State.SUCCEEDED

        await h.slack.wait_for(lambda _: undone(), timeout=30)
        done = s.store.get(m.id)
        assert done.state is State.FAILED
        assert "rolled back" in (done.error or "")
        assert s.store.get(m.id).started_at is not None
        with engine.connect() as conn:
            assert conn.execute(text("SELECT MAX(hits) FROM items")).scalar() == 0
    finally:
        await h.close()
        engine.dispose()
