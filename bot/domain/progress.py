"""Live progress of a running step (pure): rows, totals, rate, branches, command output."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


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
    rows: int = 0
    total: int | None = None
    batches: int = 0
    longest_batch: float = 0.0
    retries: int = 0
    branches: dict[str, BranchProgress] = field(default_factory=dict)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=8))

    def rate(self, now: datetime) -> float:
        """Rows per second since the step started."""
        seconds = (now - self.started_at).total_seconds()
        return self.rows / seconds if seconds > 0 else 0.0

    def branch(self, key: str) -> BranchProgress:
        """The progress of branch ``key``, created on first use."""
        return self.branches.setdefault(key, BranchProgress())

    def add_rows(self, branch: str, rows_done: int) -> None:
        """Record a branch's (or the step's, for branch "") running row total."""
        if branch:
            progress = self.branch(branch)
            progress.rows, progress.state = rows_done, "running"
            self.rows = sum(b.rows for b in self.branches.values())
        else:
            self.rows = rows_done
