"""Counts that moved between the request and the start of a run (pure).

Approvers approve a plan together with the rows each step touches; when the data changes
before the run starts, the rows it will touch may be far from what they saw. At start the
count queries run again, and a count that moved by more than the target's threshold is news.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Drift:
    """One step's count at the request and now."""

    step: str
    before: int
    after: int

    def describe(self) -> str:
        """``move-tasks: 400 → 800 rows (+100%)``"""
        if self.before == 0:
            change = "new"
        else:
            change = f"{(self.after - self.before) / self.before * 100:+.0f}%"
        return f"{self.step}: {self.before:,} → {self.after:,} rows ({change})"


def count_drift(before: Mapping[str, int], after: Mapping[str, int], percent: float) -> list[Drift]:
    """The steps whose count moved by more than ``percent`` of what it was at the request
    (from 0, any change), in the order of ``after``. Steps counted only once are left out."""
    moved = []
    for step, now in after.items():
        if step not in before:
            continue
        then = before[step]
        if abs(now - then) > then * percent / 100 or (then == 0 and now != 0):
            moved.append(Drift(step, then, now))
    return moved


def drift_notice(migration_id: int, drifts: list[Drift], percent: float, held: bool) -> str:
    """What the migration's thread says about counts that moved since the request."""
    moved = "; ".join(d.describe() for d in drifts)
    text = (
        f"#{migration_id}: the rows it touches moved by more than {percent:g}% since it was "
        f"requested: {moved}."
    )
    if held:
        return text + (
            " It was not started: on a production target the changed counts need a fresh "
            "approval, and earlier approvals no longer count."
        )
    return text + " It starts with the new counts (the target is not production)."
