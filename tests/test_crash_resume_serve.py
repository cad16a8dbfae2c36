"""Crash resume of the whole bot: `barq-bot serve` is SIGKILLed again and again while a
batch step runs against PostgreSQL (and SQL Server, given BARQ_TEST_MSSQL_URL), and restarted
each time. The run resumes from its last committed checkpoint and ends with every row changed
exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from bot.local.process import BotProcess
from bot.local.slack import LocalSlack
from tests.harness import APPROVALS, CHANNELS, MIGRATIONS, USERS
from tests.test_e2e_serve import SECRET, request_and_approve

pytestmark = pytest.mark.crash
ROWS = 40_000
KILLS = 5
# Small batches on a tight budget: hundreds of short transactions, so a kill lands anywhere.
RUNBOOK = """
name: hit-items
description: move every item of tenant 1 to tenant 2, counting each application in Hits
targets: [staging]
steps:
  - name: move
    kind: batch
    table: Items
    key: Id
    where: TenantId = 1
    update: TenantId = 2, Hits = Hits + 1
    batch: {size: 100, min: 50, max: 200, budget_ms: 5}
  - name: all-moved-once
    kind: check
    sql: SELECT COUNT(*) FROM Items WHERE TenantId <> 2 OR Hits <> 1
    expect: "== 0"
"""


# Per dialect: the ROWS items of tenant 1, and whether the checkpoint table exists yet.
_ITEMS = {
    "postgresql": f"INSERT INTO Items SELECT g, 1, 0 FROM generate_series(1, {ROWS}) g",
    "mssql": f"WITH n AS (SELECT TOP ({ROWS}) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS g"
    " FROM sys.all_objects a CROSS JOIN sys.all_objects b) INSERT INTO Items SELECT g, 1, 0 FROM n",
}
_CHECKPOINTS_EXIST = {
    "postgresql": "SELECT to_regclass('barq_checkpoints')",
    "mssql": "SELECT OBJECT_ID('dbo.barq_checkpoints')",
}


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mssql", marks=pytest.mark.mssql),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each server dialect (SQL Server only given BARQ_TEST_MSSQL_URL)."""
    fixture = {"postgresql": "pg_url", "mssql": "mssql_url"}[request.param]
    return str(request.getfixturevalue(fixture))


def _done_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        exists = conn.execute(text(_CHECKPOINTS_EXIST[engine.dialect.name])).scalar()
        if exists is None:
            return 0
        found = conn.execute(text("SELECT MAX(rows_done) FROM barq_checkpoints")).scalar()
        return int(found or 0)


async def test_sigkilled_bot_resumes_the_run_and_applies_no_batch_twice(
    tmp_path: Path, server_url: str
) -> None:
    """Each restart picks the running migration up from its checkpoint; the final data is
    that of an uninterrupted run (every row moved, each exactly once)."""
    target = create_engine(server_url)
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(text(_ITEMS[target.dialect.name]))
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "hit-items.yaml").write_text(RUNBOOK)
    config = {
        "targets": {
            "staging": {
                "url": server_url,
                "approval": {"approver_groups": ["S0DBA"], "required": 1},
            }
        },
        "approvals_channel": APPROVALS,
        "notify_channel": MIGRATIONS,
        "runbooks_dir": str(runbooks),
    }
    chance = random.Random(20261125)
    async with LocalSlack(channels=CHANNELS, usergroups={"S0DBA": ["U0BOB"]}, users=USERS) as slack:
        bot = BotProcess(tmp_path, config, slack.api_url, signing_secret=SECRET)
        try:
            await bot.start()
            await request_and_approve(bot.url, slack, "request hit-items on=staging")
            killed_at: list[int] = []
            while len(killed_at) < KILLS:
                before = killed_at[-1] if killed_at else 0
                await bot.wait_until(
                    lambda before=before: _done_rows(target) > before,
                    30,
                    what="making progress",
                    every=0.005,
                )
                await asyncio.sleep(chance.uniform(0, 0.05))
                assert await bot.kill() == -signal.SIGKILL
                killed_at.append(_done_rows(target))
                assert killed_at[-1] < ROWS, f"the run finished before kill {len(killed_at)}"
                await bot.start()
            await slack.wait_for(_finished, timeout=60)
        finally:
            await bot.stop()
    outcome = next(m for m in slack.messages_in(MIGRATIONS) if m.get("thread_ts"))
    assert "succeeded" in outcome["text"], outcome["text"]
    assert killed_at == sorted(set(killed_at)), killed_at
    with target.connect() as conn:
        shape = conn.execute(
            text("SELECT TenantId, Hits, COUNT(*) FROM Items GROUP BY TenantId, Hits")
        )
        assert [tuple(r) for r in shape] == [(2, 1, ROWS)]
        checkpoint = conn.execute(text("SELECT rows_done, done FROM barq_checkpoints")).one()
        assert tuple(checkpoint) == (ROWS, True)
    assert bot.log_path.read_text().count("resuming after a restart") == KILLS
    target.dispose()


def _finished(slack: LocalSlack) -> bool:
    return any(m.get("thread_ts") for m in slack.messages_in(MIGRATIONS))
