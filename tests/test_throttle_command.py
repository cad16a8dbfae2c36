"""``/migrate throttle <id> <0-100%>`` and ``off``: parsed, authorized like pause (the
requester or an approver), audited, said in the run's thread, and felt by the next batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.adapters.targets.batches import BatchReport
from bot.domain.lifecycle import State
from bot.errors import UsageError
from bot.executors import batch as batch_executor
from handlers.parse import Command, parse
from tests import harness
from tests.harness import MIGRATIONS, Harness

HITS = """
name: count-items
description: add one hit to every item, in small batches
targets: [staging]
steps:
  - name: hit
    kind: batch
    table: Items
    key: Id
    update: Hits = Hits + 1
    batch: {size: 10, min: 10, max: 10, budget_ms: 60000}
"""


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("throttle 12 50%", Command("throttle", migration_id=12, level=0.5)),
        ("throttle #12 100", Command("throttle", migration_id=12, level=1.0)),
        ("THROTTLE 12 off", Command("throttle", migration_id=12, level=None)),
    ],
)
def test_parse_throttle(typed: str, command: Command) -> None:
    assert parse(typed) == command


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("throttle 12", "say which migration and how much to slow it"),
        ("throttle 12 50% now", "say which migration and how much to slow it"),
        ("throttle x 50%", "'x' is not a migration id"),
        ("throttle 12 fast", "'fast' is not a throttle level: give 0 to 100%"),
        ("throttle 12 120%", "give 0 to 100%"),
    ],
)
def test_parse_throttle_refusals(typed: str, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        parse(typed)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite:///{tmp_path / 'items.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE Items (Id INTEGER PRIMARY KEY, Hits INTEGER)"))
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
                " INSERT INTO Items SELECT i, 0 FROM n"
            )
        )
    engine.dispose()
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "count-items.yaml").write_text(HITS)
    bot = await harness.start(tmp_path, harness.policies(url), folder)
    yield bot
    await bot.close()


async def test_throttle_by_hand_shrinks_the_next_batches_until_lifted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, loop = h.bot.service, asyncio.get_running_loop()
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    replies: dict[str, str] = {}
    rows: list[int] = []
    real = batch_executor.run_batches

    def slash(user: str, typed: str) -> str:
        reply = asyncio.run_coroutine_threadsafe(h.slash(user, typed), loop).result(timeout=20)
        return harness.text_of(reply)

    def run_batches(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
        def note(report: BatchReport) -> None:
            on_batch(report)
            rows.append(report.rows)
            if report.batches == 2:
                replies["dave"] = slash("U0DAVE", f"throttle {m.id} 50%")
                replies["alice"] = slash("U0ALICE", f"throttle {m.id} 50%")
            if report.batches == 5:
                replies["carol"] = slash("U0CAROL", f"throttle {m.id} off")

        return real(*args, on_batch=note, **kwargs)

    monkeypatch.setattr(batch_executor, "run_batches", run_batches)
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    assert h.bot.store.get(m.id).state is State.SUCCEEDED
    assert "only the requester (<@U0ALICE>) or an approver may throttle" in replies["dave"]
    assert f"#{m.id} is throttled to 50% of its speed" in replies["alice"]
    assert f"#{m.id} runs at full speed again" in replies["carol"]
    assert rows == [10, 10, 5, 5, 5] + [10] * 6 + [5], rows
    trail = [(a.actor, a.action, a.detail) for a in h.bot.store.audit_trail(m.id)]
    throttles = [t for t in trail if t[1] == "throttle"]
    assert throttles == [
        ("U0ALICE", "throttle", {"percent": 50}),
        ("U0CAROL", "throttle", {"percent": None}),
    ]
    thread = " ".join(json.dumps(x["blocks"]) for x in h.slack.messages_in(MIGRATIONS))
    assert "<@U0ALICE> throttled it by 50%" in thread
    assert "<@U0CAROL> lifted the manual throttle" in thread


async def test_only_a_running_migration_is_throttled(h: Harness) -> None:
    m, _ = await h.bot.service.request("U0ALICE", "count-items", {}, "staging")
    reply = harness.text_of(await h.slash("U0ALICE", f"throttle {m.id} 30%"))
    assert "only a running migration is throttled" in reply
