"""Progress of a run (pure): the live figures of the running step (rows, totals, rate,
branches, command output), and each step's figures folded over all its executions.

A run may execute a step several times: it is paused and resumed, fails and is resumed, or
the bot restarts. ``barq_step_runs`` holds one row per execution; what users see is one line
per step whose figures add up the same however many executions there were.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.records import StepRun


@dataclass
class BranchProgress:
    """One branch of a parallel step."""

    rows: int = 0
    total: int | None = None
    state: str = "waiting"  # waiting | running | done | stopped | failed


@dataclass
class LiveProgress:
    """What the progress message shows about the step that is running now."""

    step_index: int
    step_name: str
    kind: str
    started_at: datetime
    rows: int = 0  # the step's committed rows, earlier executions included
    total: int | None = None  # the step's rows in all, earlier executions included
    base_rows: int = 0  # rows committed before this execution started
    batches: int = 0
    longest_batch: float = 0.0
    retries: int = 0
    branches: dict[str, BranchProgress] = field(default_factory=dict)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=8))

    def rate(self, now: datetime) -> float:
        """Rows per second of this execution: the rows it committed over the time it has
        run (not earlier executions' rows, nor the time the run was paused)."""
        seconds = (now - self.started_at).total_seconds()
        return (self.rows - self.base_rows) / seconds if seconds > 0 else 0.0

    def branch(self, key: str) -> BranchProgress:
        """The progress of branch ``key``, created on first use."""
        return self.branches.setdefault(key, BranchProgress())

    def resume_branch(self, key: str, done: int, left: int) -> None:
        """Start branch ``key`` from its checkpoint: ``done`` rows committed by earlier
        executions, ``left`` to go."""
        progress = self.branch(key)
        progress.rows, progress.total = done, done + left
        self.base_rows += done
        self.rows = sum(b.rows for b in self.branches.values())

    def add_rows(self, branch: str, rows_done: int) -> None:
        """Record a branch's (or the step's, for branch "") running row total."""
        if branch:
            progress = self.branch(branch)
            progress.rows, progress.state = rows_done, "running"
            self.rows = sum(b.rows for b in self.branches.values())
        else:
            self.rows = rows_done


@dataclass(frozen=True)
class StepTotal:
    """One step of a run over all its executions."""

    phase: str
    step_index: int
    name: str
    kind: str
    state: str  # the latest execution's
    rows: int  # committed in all, as its checkpoints say
    detail: str | None  # the latest execution's
    seconds: float  # time spent running, over the finished executions
    finished: bool  # the latest execution has finished
    executions: int


def fold(runs: Iterable[StepRun], in_batches: Callable[[str], bool]) -> list[StepTotal]:
    """One total per step (and phase), in the order the steps first ran.

    A step that commits in batches (``in_batches(kind)``) records in each execution the
    rows its checkpoints hold, earlier executions included: its total is the largest. Any
    other step commits all or nothing: its total is what its succeeded executions changed
    (a skipped execution of an already committed step records none)."""
    groups: dict[tuple[str, int], list[StepRun]] = {}
    for run in runs:
        groups.setdefault((run.phase, run.step_index), []).append(run)
    totals = []
    for (phase, index), execs in groups.items():
        last = execs[-1]
        if in_batches(last.kind):
            rows = max(r.rows for r in execs)
        else:
            rows = sum(r.rows for r in execs if r.state == "succeeded")
        seconds = sum(
            (r.finished_at - r.started_at).total_seconds() for r in execs if r.finished_at
        )
        totals.append(
            StepTotal(
                phase,
                index,
                last.name,
                last.kind,
                last.state,
                rows,
                last.detail,
                seconds,
                last.finished_at is not None,
                len(execs),
            )
        )
    return totals


def steps_done(totals: Iterable[StepTotal]) -> int:
    """How many distinct steps of the run phase have committed."""
    return sum(1 for t in totals if t.phase == "run" and t.state == "succeeded")


def rows_so_far(totals: Iterable[StepTotal]) -> int:
    """The rows the run phase has committed."""
    return sum(t.rows for t in totals if t.phase == "run")


def earlier_end(actions: list[str], *, restarted: bool) -> str:
    """Why a step found committed was committed in an earlier execution of this run: the
    bot restarted, or the run was paused or failed (the latest of those in ``actions``,
    the audit trail's actions in order), or "" when that is not known."""
    if restarted:
        return "a restart"
    ended = [a for a in actions if a in ("pause", "fail")]
    return {"pause": "a pause", "fail": "a failure"}.get(ended[-1], "") if ended else ""


def skip_detail(why: str) -> str:
    """The detail of a skipped execution of a step committed earlier in the run."""
    before = f" (before {why})" if why else ""
    return f"committed in an earlier execution of this run{before}; not run again"
