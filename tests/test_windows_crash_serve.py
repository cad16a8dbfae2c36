"""Downtime windows survive crashes: `barq-bot serve` is SIGKILLed before its window opens,
at the opening, and mid-run, and restarted each time. The run starts once, inside its window,
resumes from its checkpoint, and changes every row exactly once."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.local.process import BotProcess
from bot.local.slack import LocalSlack
from tests.harness import APPROVALS, CHANNELS, MIGRATIONS, USERS
from tests.test_e2e_serve import SECRET, request_and_approve

pytestmark = [pytest.mark.crash, pytest.mark.postgres]
ROWS = 20_000
RUNBOOK = """
name: hit-items
description: move every item of tenant 1 to tenant 2, counting each application in Hits
targets: [staging]
estimate: 5s
steps:
  - name: move
    kind: batch
    table: Items
    key: Id
    where: TenantId = 1
    update: TenantId = 2, Hits = Hits + 1
    batch: {size: 100, min: 50, max: 200, budget_ms: 5}
"""


def _state(bot: BotProcess, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(bot.state_db) as conn:
        return list(conn.execute(sql))


def _done_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('barq_checkpoints')")).scalar() is None:
                return 0
            found = conn.execute(text("SELECT MAX(rows_done) FROM barq_checkpoints")).scalar()
            return int(found or 0)
    finally:
        engine.dispose()


async def test_sigkilled_before_at_and_after_the_opening(tmp_path: Path, pg_url: str) -> None:
    """Killed while waiting, at the window's opening and mid-run: one start, inside the
    window, every row moved once."""
    target = create_engine(pg_url)
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(text(f"INSERT INTO Items SELECT g, 1, 0 FROM generate_series(1, {ROWS}) g"))
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "hit-items.yaml").write_text(RUNBOOK)
    opens = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    config = {
        "targets": {
            "staging": {
                "url": pg_url,
                "approval": {"approver_groups": ["S0DBA"], "required": 1},
                "windows": {
                    "timezone": "UTC",
                    "once": [
                        {
                            "start": opens.replace(tzinfo=None).isoformat(),
                            "duration": "10m",
                        }
                    ],
                },
            }
        },
        "approvals_channel": APPROVALS,
        "notify_channel": MIGRATIONS,
        "runbooks_dir": str(runbooks),
    }
    async with LocalSlack(channels=CHANNELS, usergroups={"S0DBA": ["U0BOB"]}, users=USERS) as slack:
        bot = BotProcess(tmp_path, config, slack.api_url, signing_secret=SECRET)
        try:
            await bot.start()
            await request_and_approve(bot.url, slack, "request hit-items on=staging")
            await bot.wait_until(
                lambda: _state(bot, "SELECT due_at FROM barq_migrations WHERE due_at IS NOT NULL"),
                15,
                what="scheduled",
            )
            assert datetime.now(UTC) < opens, "the window opened before the test could kill"
            assert await bot.kill() == -signal.SIGKILL  # waiting for its window
            await bot.start()
            assert _state(bot, "SELECT state FROM barq_migrations") == [("approved",)]
            await bot.wait_until(
                lambda: datetime.now(UTC) >= opens - timedelta(milliseconds=200),
                30,
                what="at the opening",
                every=0.01,
            )
            assert await bot.kill() == -signal.SIGKILL  # at the opening
            await bot.start()  # its first pass starts it: the rest of the window holds it
            await bot.wait_until(lambda: _done_rows(pg_url) > 0, 30, what="running", every=0.01)
            assert await bot.kill() == -signal.SIGKILL  # mid-run
            assert _done_rows(pg_url) < ROWS, "the run finished before the last kill"
            await bot.start()
            await slack.wait_for(
                lambda s: any(
                    m.get("thread_ts") and "succeeded" in m.get("text", "")
                    for m in s.messages_in(MIGRATIONS)
                ),
                timeout=60,
            )
        finally:
            await bot.stop()
    starts = _state(bot, "SELECT at FROM barq_audit_log WHERE action = 'start'")
    assert len(starts) == 1, "started once"
    started = datetime.fromisoformat(str(starts[0][0])).replace(tzinfo=UTC)
    assert started >= opens, "inside its window"
    with target.connect() as conn:
        shape = conn.execute(
            text("SELECT TenantId, Hits, COUNT(*) FROM Items GROUP BY TenantId, Hits")
        )
        assert [tuple(r) for r in shape] == [(2, 1, ROWS)]
    target.dispose()
