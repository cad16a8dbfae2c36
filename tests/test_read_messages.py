"""What `/migrate list` and `/migrate status` say: parameter limits, who decided and when, how
long things took, paging, and wording that reads as English."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters import blocks
from bot.adapters.targets.batches import BatchResult
from bot.domain.lifecycle import State, in_state
from bot.domain.records import AuditEntry, Migration
from bot.domain.runbook import Runbook
from bot.executors.batch import batch_summary
from tests.test_plan_steps import all_kinds_plan

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _text(message: blocks.Message) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def _migration(state: State = State.SUCCEEDED, **fields: object) -> Migration:
    m = Migration(
        7, "m-7", all_kinds_plan(), {}, state, "U0ALICE", T0, T0, None, None, False, False, 0,
        None, [],
    )  # fmt: skip
    return replace(m, **fields)  # type: ignore[arg-type]


def test_list_shows_each_parameters_limits() -> None:
    """min and max, a pattern and the allowed choices are shown next to each parameter."""
    runbook = Runbook.model_validate(
        {
            "name": "r",
            "description": "d",
            "targets": ["*"],
            "parameters": {
                "years": {"type": "int", "min": 1, "max": 10, "description": "keep this many"},
                "floor": {"type": "int", "min": 0},
                "mode": {"type": "str", "choices": ["fast", "slow"]},
                "dir": {"type": "str", "pattern": "[a-z]+"},
            },
            "steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1"}],
        }
    )
    text = _text(blocks.runbook_list([runbook]))
    assert "`years` (int, 1 to 10: keep this many)" in text
    assert "`floor` (int, at least 0)" in text
    assert "`mode` (str, one of `fast`, `slow`)" in text
    assert "`dir` (str, matching `[a-z]+`)" in text


def test_status_shows_who_decided_and_when_and_how_long_it_took() -> None:
    """The requester, each approval and rejection with its time, start, finish and durations."""
    started, finished = T0 + timedelta(minutes=5), T0 + timedelta(minutes=6, seconds=30)
    m = _migration(started_at=started, finished_at=finished)
    history = [
        AuditEntry(7, "U0ALICE", "request", {}, T0),
        AuditEntry(7, "U0BOB", "approve", {}, T0 + timedelta(minutes=2)),
        AuditEntry(7, "U0CAROL", "reject", {"reason": "too early"}, T0 + timedelta(minutes=3)),
        AuditEntry(7, "bot", "step-start", {}, started),
        AuditEntry(7, "bot", "start", {}, started),
    ]
    text = _text(blocks.status(m, [], finished, history=history))
    assert "requested by <@U0ALICE> at 2026-11-29 12:00:00 UTC" in text
    assert "approved by <@U0BOB> at 12:02:00 (2m 00s after the request)" in text
    assert "rejected by <@U0CAROL> at 12:03:00 (3m 00s after the request): too early" in text
    assert "started at 12:05:00 (5m 00s after the request)" in text
    assert "finished at 12:06:30 (ran 1m 30s)" in text
    assert "step-start" not in text


def test_status_list_says_how_to_see_older_migrations() -> None:
    """A full page ends with the command for the next one; the last page does not."""
    page = [_migration(id=n) for n in range(20, 10, -1)]
    text = _text(blocks.status_list(page, page=1, more=True))
    assert "`/migrate status page=2`" in text
    assert "page 1" in text
    last = _text(blocks.status_list(page[:3], page=3, more=False))
    assert "page=4" not in last and "page 3" in last
    assert "no migrations on page 5" in _text(blocks.status_list([], page=5, more=False)).lower()


@pytest.mark.parametrize(
    ("state", "phrase"),
    [
        (State.SUCCEEDED, "#7 succeeded"),
        (State.RUNNING, "#7 is running"),
        (State.REQUESTED, "#7 is waiting for approval"),
        (State.REJECTED, "#7 was rejected"),
        (State.CANCELLED, "#7 was cancelled"),
        (State.EXPIRED, "#7 expired"),
    ],
)
def test_a_state_reads_as_english(state: State, phrase: str) -> None:
    """No "#7 is succeeded": each state has its own verb."""
    assert in_state(7, state) == phrase
    again = _text(blocks.requested(_migration(state), created=False))
    assert phrase.replace("#7", "*#7*") in again


def test_one_step_is_not_steps() -> None:
    """A one-step runbook's success says "its one step", not "All 1 steps"."""
    m = _migration()
    one = m.plan.model_copy(update={"steps": m.plan.steps[:1]})
    assert blocks.data_state(replace(m, plan=one), []) == "Its one step committed and verified."
    assert blocks.data_state(m, []).startswith(f"All {len(m.plan.steps)} steps committed")


@pytest.mark.parametrize(
    ("batches", "retries", "detail"),
    [
        (0, 0, "no batch needed: no rows were left to change"),
        (1, 0, "1 batch, longest 20 ms"),
        (3, 2, "3 batches, longest 20 ms, 2 retried"),
    ],
)
def test_a_batch_steps_detail_reads_well_with_no_batch(
    batches: int, retries: int, detail: str
) -> None:
    """A batch step that found nothing to change says so, not "0 batches, longest 20 ms"."""
    result = BatchResult(0, batches, True, 0.02, retries)
    assert batch_summary(result) == detail
