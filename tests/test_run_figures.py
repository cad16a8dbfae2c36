"""A run's figures folded over the executions of its steps: they add up the same however many
times the run was paused, resumed, failed or restarted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters import blocks
from bot.domain.lifecycle import State
from bot.domain.plan import Plan
from bot.domain.planned import PlannedCheck
from bot.domain.progress import (
    LiveProgress,
    earlier_end,
    fold,
    rows_so_far,
    skip_detail,
    steps_done,
)
from bot.domain.records import Migration, StepRun

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BATCHED = {"batch", "parallel"}
SKIP = skip_detail("a pause")


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _run(index: int, kind: str, state: str, rows: int, start: float, end: float | None) -> StepRun:
    detail = SKIP if (state, rows, start) == ("succeeded", 0, end) else None
    finished = None if end is None else _at(end)
    return StepRun("run", index, f"s{index}", kind, state, rows, detail, _at(start), finished)


# (executions, (state, rows, running seconds, executions) per step)
CASES = [
    (  # a batch step paused once: each execution records the checkpoint's total
        [
            _run(1, "batch", "stopped", 969_956, 0, 2),
            _run(1, "batch", "succeeded", 1_761_484, 5, 6),
        ],
        [("succeeded", 1_761_484, 180.0, 2)],
    ),
    (  # paused twice, then the bot restarted mid-step (the open execution's rows lag)
        [
            _run(1, "batch", "stopped", 100, 0, 1),
            _run(1, "batch", "stopped", 250, 2, 3),
            _run(1, "batch", "running", 260, 4, None),
            _run(1, "batch", "succeeded", 400, 6, 7),
        ],
        [("succeeded", 400, 180.0, 4)],
    ),
    (  # an sql step committed, then skipped by each resume; a failed sql step rolled back
        [
            _run(1, "sql", "succeeded", 500, 0, 1),
            _run(2, "sql", "failed", 0, 1, 2),
            _run(1, "sql", "succeeded", 0, 3, 3),
            _run(2, "sql", "succeeded", 70, 3, 4),
        ],
        [("succeeded", 500, 60.0, 2), ("succeeded", 70, 120.0, 2)],
    ),
    (  # a parallel step failed, then resumed and finished
        [_run(1, "parallel", "failed", 120, 0, 1), _run(1, "parallel", "succeeded", 300, 2, 3)],
        [("succeeded", 300, 120.0, 2)],
    ),
]


@pytest.mark.parametrize(("runs", "expected"), CASES)
def test_each_step_is_one_total_over_its_executions(
    runs: list[StepRun], expected: list[tuple[str, int, float, int]]
) -> None:
    """Rows are what the checkpoints committed in all, time is time spent running."""
    totals = fold(runs, BATCHED.__contains__)
    assert [(t.state, t.rows, t.seconds, t.executions) for t in totals] == expected
    assert rows_so_far(totals) == sum(e[1] for e in expected)
    assert steps_done(totals) == len(expected)


def test_a_resumed_failed_run_counts_distinct_steps_done() -> None:
    """Step 1 committed and was skipped on resume; step 2 failed again: 1 of 3 steps done."""
    runs = [
        _run(1, "sql", "succeeded", 5, 0, 1),
        _run(2, "sql", "failed", 0, 1, 2),
        _run(1, "sql", "succeeded", 0, 3, 3),
        _run(2, "sql", "failed", 0, 3, 4),
    ]
    assert steps_done(fold(runs, BATCHED.__contains__)) == 1


@pytest.mark.parametrize(
    ("actions", "restarted", "why"),
    [
        (["approve", "start", "pause", "resume"], False, "a pause"),
        (["approve", "start", "pause", "resume", "fail", "resume"], False, "a failure"),
        (["approve", "start", "fail", "resume", "pause", "resume"], False, "a pause"),
        (["approve", "start", "pause", "resume"], True, "a restart"),
        (["approve", "start"], False, ""),
    ],
)
def test_why_a_step_was_committed_in_an_earlier_execution(
    actions: list[str], restarted: bool, why: str
) -> None:
    """The latest pause or failure, or a restart; nothing when it is not known."""
    assert earlier_end(actions, restarted=restarted) == why


def test_skip_detail_names_the_earlier_execution() -> None:
    assert skip_detail("a failure") == (
        "committed in an earlier execution of this run (before a failure); not run again"
    )
    assert skip_detail("") == "committed in an earlier execution of this run; not run again"


@pytest.mark.parametrize(
    ("base", "rows", "seconds", "rate"),
    [
        (0, 600, 60, 10.0),  # a first execution
        (1_000, 1_600, 60, 10.0),  # a resumed one: earlier executions' rows do not count
        (1_000, 1_000, 0, 0.0),  # just started
    ],
)
def test_the_rate_is_this_executions_rows_over_its_running_time(
    base: int, rows: int, seconds: int, rate: float
) -> None:
    live = LiveProgress(1, "copy", "batch", started_at=T0, rows=rows, base_rows=base)
    assert live.rate(T0 + timedelta(seconds=seconds)) == rate


def test_a_branch_resumes_from_its_checkpoint() -> None:
    """A resumed branch starts at its committed rows; its total includes them."""
    live = LiveProgress(1, "bump", "parallel", started_at=T0)
    live.resume_branch("1", 40, 10)
    live.resume_branch("2", 50, 0)
    live.add_rows("1", 45)
    assert (live.rows, live.base_rows, live.branches["1"].total) == (95, 90, 50)
    assert live.rate(T0 + timedelta(seconds=5)) == 1.0


def _migration(state: State, count: int) -> Migration:
    steps = [PlannedCheck(index=i, name=f"s{i}", sql="SELECT 1") for i in range(1, count + 1)]
    plan = Plan(
        runbook="rb",
        description="",
        runbook_digest="d",
        target="staging",
        dialect="sqlite",
        params={},
        steps=tuple(steps),
        rollback=(),
        hash="0" * 64,
    )
    return Migration(
        id=1,
        run_key="m1",
        plan=plan,
        counts={},
        state=state,
        requester="U0ALICE",
        requested_at=T0,
        updated_at=T0,
        started_at=T0,
        finished_at=_at(10),
        cancel_requested=False,
        pause_requested=False,
        current_step=1,
        error=None,
        backups=[],
    )


PAUSED_TWICE = [
    _run(1, "batch", "stopped", 969_956, 0, 2),
    _run(1, "batch", "stopped", 1_500_000, 3, 4),
    _run(1, "batch", "succeeded", 1_761_484, 5, 6),
]


def test_progress_and_outcome_of_a_run_paused_twice_show_the_step_once() -> None:
    """One line for the step, its committed rows (not the sum of its executions')."""
    m = _migration(State.SUCCEEDED, 1)
    shown = json.dumps(blocks.progress(m, PAUSED_TWICE, _at(10))) + json.dumps(
        blocks.outcome(m, PAUSED_TWICE)
    )
    assert "1,761,484 rows so far" in shown and "1 of 1 steps done" in shown
    assert shown.count("s1: ") == 2, "one line in each message"
    assert "4,231,440" not in shown and "969,956" not in shown
    assert "1. s1: succeeded, 1,761,484 rows, 4m 00s" in shown


def test_a_resumed_failed_run_reports_the_steps_done_once() -> None:
    """Step 1 committed, step 2 failed, was resumed and failed again: 1 of 3 steps done,
    and the data state names step 1 as committed."""
    runs = [
        _run(1, "sql", "succeeded", 5, 0, 1),
        _run(2, "batch", "failed", 40, 1, 2),
        _run(1, "sql", "succeeded", 0, 3, 3),
        _run(2, "batch", "failed", 90, 3, 4),
    ]
    m = _migration(State.FAILED, 3)
    shown = json.dumps(blocks.progress(m, runs, _at(10)))
    assert "1 of 3 steps done" in shown and "95 rows so far" in shown
    assert blocks.data_state(m, runs) == (
        "Committed up to step 1 (s1); step 2 (s2) committed 90 rows in batches up to its last "
        "checkpoint; the failing batch was rolled back."
    )


def test_a_batch_step_that_failed_before_finishing_did_commit_rows() -> None:
    """No step was completed, but rows were: the summary does not say nothing was committed."""
    runs = [_run(1, "batch", "stopped", 900, 0, 1), _run(1, "batch", "failed", 1_761_484, 2, 3)]
    m = _migration(State.FAILED, 2)
    assert blocks.data_state(m, runs) == (
        "No step was completed; step 1 (s1) committed 1,761,484 rows in batches up to its last "
        "checkpoint; the failing batch was rolled back."
    )
