"""Crash resume of the whole bot: `barq-bot serve` is SIGKILLed again and again while a
batch step runs against PostgreSQL, and restarted each time. The run resumes from its last
committed checkpoint and ends with every row changed exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text

from bot.local.slack import LocalSlack
from tests.harness import APPROVALS, CHANNELS, MIGRATIONS, USERS
from tests.test_e2e_serve import (
    SECRET,
    _free_port,
    _wait_healthy,
    request_and_approve,
    stop_process,
)

pytestmark = pytest.mark.postgres
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


def _done_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('barq_checkpoints')")).scalar()
        if exists is None:
            return 0
        found = conn.execute(text("SELECT MAX(rows_done) FROM barq_checkpoints")).scalar()
        return int(found or 0)


class _Bot:
    """`barq-bot serve` as a process that the test may kill and start again."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log_path = tmp_path / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"],
                cwd=self.tmp_path,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await _wait_healthy(self.url, self.process, self.log_path)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            await stop_process(self.process)


async def test_sigkilled_bot_resumes_the_run_and_applies_no_batch_twice(
    tmp_path: Path, pg_url: str
) -> None:
    """Each restart picks the running migration up from its checkpoint; the final data is
    that of an uninterrupted run (every row moved, each exactly once)."""
    target = create_engine(pg_url)
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INT PRIMARY KEY, TenantId INT, Hits INT)"))
        conn.execute(text(f"INSERT INTO Items SELECT g, 1, 0 FROM generate_series(1, {ROWS}) g"))
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "hit-items.yaml").write_text(RUNBOOK)
    config = {
        "targets": {
            "staging": {"url": pg_url, "approval": {"approver_groups": ["S0DBA"], "required": 1}}
        },
        "approvals_channel": APPROVALS,
        "notify_channel": MIGRATIONS,
        "runbooks_dir": str(runbooks),
    }
    (tmp_path / "barq.yaml").write_text(yaml.safe_dump(config))
    chance = random.Random(20261125)
    async with LocalSlack(channels=CHANNELS, usergroups={"S0DBA": ["U0BOB"]}, users=USERS) as slack:
        env = {
            **os.environ,
            "BARQ_CONFIG": str(tmp_path / "barq.yaml"),
            "BARQ_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "SLACK_BOT_TOKEN": "xoxb-local",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        bot = _Bot(tmp_path, {**env, "PORT": str(_free_port())})
        try:
            await bot.start()
            await request_and_approve(bot.url, slack, "request hit-items on=staging")
            killed_at: list[int] = []
            while len(killed_at) < KILLS:
                before = killed_at[-1] if killed_at else 0
                await _wait_until(lambda before=before: _done_rows(target) > before, bot)
                await asyncio.sleep(chance.uniform(0, 0.05))
                bot.kill()
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
        shape = conn.execute(text("SELECT TenantId, Hits, COUNT(*) FROM Items GROUP BY 1, 2"))
        assert [tuple(r) for r in shape] == [(2, 1, ROWS)]
        checkpoint = conn.execute(text("SELECT rows_done, done FROM barq_checkpoints")).one()
        assert tuple(checkpoint) == (ROWS, True)
    assert bot.log_path.read_text().count("resuming after a restart") == KILLS
    target.dispose()


async def _wait_until(ready: Callable[[], bool], bot: _Bot, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no progress:\n{bot.log_path.read_text()[-3000:]}")
        await asyncio.sleep(0.005)


def _finished(slack: LocalSlack) -> bool:
    return any(m.get("thread_ts") for m in slack.messages_in(MIGRATIONS))
