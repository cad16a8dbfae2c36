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
from bot.domain.lifecycle import Event, State
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


def _items(tmp_path: Path) -> str:
    """A SQLite target of 100 items and the count-items runbook; the target's URL."""
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
    return url


async def _bot(tmp_path: Path, url: str) -> Harness:
    """The bot on that target, its state database in ``tmp_path`` (the same on a restart)."""
    return await harness.start(tmp_path, harness.policies(url), tmp_path / "runbooks")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    bot = await _bot(tmp_path, _items(tmp_path))
    yield bot
    await bot.close()


class Batches:
    """Wraps the batch executor: records each batch's rows and, after the n-th batch (counted
    over every run of the migration), types ``/migrate`` commands as that batch's hook."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        self.at: dict[int, list[tuple[str, str]]] = {}  # batch number -> (user, typed)
        self.replies: list[str] = []
        self.h: Harness | None = None
        self.loop = asyncio.get_running_loop()
        real = batch_executor.run_batches

        def run_batches(*args: Any, on_batch: Any, **kwargs: Any) -> Any:
            def note(report: BatchReport) -> None:
                on_batch(report)
                self.rows.append(report.rows)
                for user, typed in self.at.get(len(self.rows), []):
                    assert self.h is not None
                    reply = asyncio.run_coroutine_threadsafe(self.h.slash(user, typed), self.loop)
                    self.replies.append(harness.text_of(reply.result(timeout=20)))

            return real(*args, on_batch=note, **kwargs)

        monkeypatch.setattr(batch_executor, "run_batches", run_batches)


def _progress(h: Harness, migration_id: int) -> str:
    """The run's progress message in the migrations channel, as it stands."""
    for message in h.slack.messages_in(MIGRATIONS):
        shown = json.dumps(message["blocks"])
        if f"#{migration_id} count-items" in shown and "rows so far" in shown:
            return shown
    raise AssertionError(f"no progress message for #{migration_id}")


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
    assert f"#{m.id} has its throttle lifted" in replies["carol"]
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
    assert "only a running or paused migration is throttled" in reply


async def test_a_manual_throttle_holds_across_pause_and_resume_until_lifted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, store = h.bot.service, h.bot.store
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    batches = Batches(monkeypatch)
    batches.h = h
    batches.at = {2: [("U0ALICE", f"throttle {m.id} 50%")], 3: [("U0ALICE", f"pause {m.id}")]}
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    paused = store.get(m.id)
    assert paused.state is State.PAUSED
    assert paused.manual_throttle == 0.5
    assert "Throttled by hand to 50% of its speed" in _progress(h, m.id)
    assert batches.rows == [10, 10, 5]

    batches.at = {6: [("U0CAROL", f"throttle {m.id} off")]}
    reply = harness.text_of(await h.slash("U0ALICE", f"resume {m.id}"))
    assert "resumes from its last checkpoint" in reply, reply
    await h.settle()
    assert store.get(m.id).state is State.SUCCEEDED
    assert batches.rows == [10, 10, 5] + [5, 5, 5] + [10] * 6, batches.rows
    assert store.get(m.id).manual_throttle is None
    assert h.count("staging", "SELECT COUNT(*) FROM Items WHERE Hits = 1") == 100
    trail = [(a.actor, a.action, a.detail) for a in store.audit_trail(m.id)]
    assert [t for t in trail if t[1] == "throttle"] == [
        ("U0ALICE", "throttle", {"percent": 50}),
        ("U0CAROL", "throttle", {"percent": None}),
    ]
    status = harness.text_of(await h.slash("U0ALICE", f"status {m.id}"))
    assert "throttled to 50% speed by <@U0ALICE>" in status
    assert "throttle lifted by <@U0CAROL>" in status
    assert "Throttled by hand" not in status


async def test_a_manual_throttle_survives_a_restart_of_the_bot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _items(tmp_path)
    first = await _bot(tmp_path, url)
    try:
        m, _ = await first.bot.service.request("U0ALICE", "count-items", {}, "staging")
        batches = Batches(monkeypatch)
        batches.h = first
        batches.at = {
            2: [("U0ALICE", f"throttle {m.id} 40%")],
            3: [("U0ALICE", f"pause {m.id}")],
        }
        await first.bot.service.approve(m.id, "U0BOB", m.plan.hash)
        await first.settle()
        assert first.bot.store.get(m.id).state is State.PAUSED
    finally:
        await first.close()

    again = await _bot(tmp_path, url)  # a new process: nothing in memory, the same state DB
    try:
        assert again.bot.store.get(m.id).manual_throttle == 0.4
        status = harness.text_of(await again.slash("U0ALICE", f"status {m.id}"))
        assert "Throttled by hand to 60% of its speed" in status
        batches.h, batches.at = again, {}
        reply = harness.text_of(await again.slash("U0BOB", f"resume {m.id}"))
        assert "resumes from its last checkpoint" in reply, reply
        await again.settle()
        assert again.bot.store.get(m.id).state is State.SUCCEEDED
        # 10, 10, then 6-row batches (60% of 10) before the pause and after the restart
        assert batches.rows == [10, 10] + [6] * 13 + [2], batches.rows
        assert again.bot.store.get(m.id).manual_throttle == 0.4  # the record stays
        assert again.count("staging", "SELECT COUNT(*) FROM Items WHERE Hits = 1") == 100
    finally:
        await again.close()


async def test_a_paused_run_is_throttled_before_it_resumes(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, store = h.bot.service, h.bot.store
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    batches = Batches(monkeypatch)
    batches.h = h
    batches.at = {1: [("U0ALICE", f"pause {m.id}")]}
    await service.approve(m.id, "U0BOB", m.plan.hash)
    await h.settle()
    assert store.get(m.id).state is State.PAUSED
    reply = harness.text_of(await h.slash("U0BOB", f"throttle {m.id} 75%"))
    assert f"#{m.id} is throttled to 25% of its speed" in reply
    assert store.get(m.id).manual_throttle == 0.75
    await h.slash("U0ALICE", f"resume {m.id}")
    await h.settle()
    assert store.get(m.id).state is State.SUCCEEDED
    assert batches.rows == [10] + [2] * 45, batches.rows


async def test_a_run_the_bot_resumes_after_a_crash_keeps_its_manual_throttle(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot stopped while the run was running, throttled by hand (its record says so): the
    restarted bot's first pass resumes it, still throttled."""
    service, store = h.bot.service, h.bot.store
    m, _ = await service.request("U0ALICE", "count-items", {}, "staging")
    h.approve_in_store(m, "U0BOB")
    now = harness.now()
    store.transition(m.id, Event.START, actor="bot", now=now, started_at=now)
    store.set_fields(m.id, now, manual_throttle=0.3)
    batches = Batches(monkeypatch)
    batches.h = h
    await service.run_due(harness.now())  # the restarted bot's first pass
    await h.settle()
    assert store.get(m.id).state is State.SUCCEEDED
    assert batches.rows == [7] * 14 + [2], batches.rows
