"""The bot's state database goes away during a run: the run holds at its next boundary and
finishes once the database is back, no step run is left open, /migrate status says what is
wrong, and the log says it once per outage instead of filling with tracebacks."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text

from bot.domain.lifecycle import State
from bot.errors import StateUnavailable
from bot.local.barq_schema import create_demo_database
from tests import harness

pytestmark = pytest.mark.postgres
ALICE, BOB = "U0ALICE", "U0BOB"


def _runbook(started: Path, release: Path) -> str:
    """First step waits (a program) until the test releases it; the rest are quick."""
    wait = f"import pathlib,time; pathlib.Path({str(started)!r}).touch()\n" + (
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.02)"
    )
    return f"""
name: hold-then-move
description: waits for a signal, then moves tenant 3's tasks to tenant 7 and checks
targets: [staging]
steps:
  - name: hold
    kind: command
    argv: [{sys.executable!r}, -c, {wait!r}]
  - name: move
    kind: sql
    sql: UPDATE Tasks SET TenantId = 7 WHERE TenantId = 3
  - name: moved
    kind: check
    sql: SELECT COUNT(*) FROM Tasks WHERE TenantId = 3
    expect: "== 0"
"""


def _connections(admin: Engine, database: str, *, allowed: bool) -> None:
    """Let the state database take connections again, or refuse them and drop the open
    ones: an outage as the bot sees it."""
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {str(allowed).lower()}"))
        if not allowed:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": database},
            )


async def _until(path: Path) -> None:
    async with asyncio.timeout(20):
        while not path.exists():  # noqa: ASYNC110 - the signal is a file another process writes
            await asyncio.sleep(0.02)


async def test_a_run_outlives_a_state_database_outage(
    tmp_path: Path, pg_url: str, pg_admin_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The state database refuses connections while step 1 runs and for a while after it
    ends; the run holds, then finishes; its record adds up; status says what is wrong."""
    started, release = tmp_path / "started", tmp_path / "release"
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "hold-then-move.yaml").write_text(_runbook(started, release))
    staging = create_demo_database(tmp_path / "staging.db", now=harness.now())
    h = await harness.start(tmp_path, harness.policies(staging), folder, database_url=pg_url)
    h.bot.service.engine.state_retry_seconds = 0.05
    database = make_url(pg_url).database
    assert database is not None
    try:
        m, _ = await h.bot.service.request(ALICE, "hold-then-move", {}, "staging")
        await h.bot.service.approve(m.id, BOB, m.plan.hash)
        await _until(started)
        with caplog.at_level(logging.WARNING):
            _connections(pg_admin_engine, database, allowed=False)
            try:
                release.touch()  # step 1 ends during the outage: its end cannot be recorded
                await asyncio.sleep(1.0)  # the outage lasts; the engine retries meanwhile
                with pytest.raises(StateUnavailable, match="state database is unreachable"):
                    await h.bot.service.status(m.id)
            finally:
                _connections(pg_admin_engine, database, allowed=True)
            await h.settle()
        done = h.bot.store.get(m.id)
        runs = h.bot.store.step_runs(m.id)
        assert done.state is State.SUCCEEDED, done.error
        assert [(r.name, r.state) for r in runs] == [
            ("hold", "succeeded"),
            ("move", "succeeded"),
            ("moved", "succeeded"),
        ]
        assert h.count("staging", "SELECT COUNT(*) FROM Tasks WHERE TenantId = 3") == 0
        said = [r.getMessage() for r in caplog.records if r.name == "bot.adapters.store"]
        assert len(said) == 2, said
        assert "unreachable" in said[0] and "reachable again" in said[1]
        assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    finally:
        await h.close()
