"""Which migrations must not run side by side on one target.

Two plans on the same target conflict when they change the same data:
- the same runbook: always, unless the runbook names the parameters that say which data it
  changes (``conflicts_on``); then only when those values overlap (tenant 4→5 and 4→6 share
  tenant 4; 3→7 and 7→3 share both);
- different runbooks: when they write a table in common, or when either writes tables the bot
  cannot name (a command, a restore, SQL it cannot read), which could be any of them.
"""

from __future__ import annotations

from bot.domain.plan import Plan
from bot.domain.planned import (
    PlannedBatch,
    PlannedCommand,
    PlannedParallel,
    PlannedRestore,
    PlannedSql,
    PlannedStep,
    show,
)
from bot.domain.touched import sql_writes


def tables_written(step: PlannedStep) -> frozenset[str] | None:
    """The tables ``step`` writes (lower case, unquoted); None when it cannot be told (a
    command or a restore may write anything)."""
    if isinstance(step, PlannedCommand | PlannedRestore):
        return None
    if isinstance(step, PlannedBatch | PlannedParallel):
        plan = step.batch
        names = {plan.table, *(n for n in (plan.insert_into, plan.journal) if n is not None)}
        return frozenset(_name(n) for n in names)
    if isinstance(step, PlannedSql):
        return frozenset(_name(w.table) for w in sql_writes(step.sql))
    return frozenset()


def plan_writes(plan: Plan) -> frozenset[str] | None:
    """Every table the plan's steps write; None when one of them cannot be told."""
    tables: set[str] = set()
    for step in plan.steps:
        written = tables_written(step)
        if written is None:
            return None
        tables |= written
    return frozenset(tables)


def conflict(plan: Plan, other: Plan, conflicts_on: list[str] | None) -> str | None:
    """Why ``plan`` must not run beside ``other`` (a sentence to show), or None when it may.
    ``conflicts_on`` are the parameters of ``plan``'s runbook that say which data it changes."""
    if plan.target != other.target:
        return None
    if plan.runbook == other.runbook:
        if conflicts_on is None:
            return f"both run {plan.runbook}"
        mine = {show(plan.params[n]) for n in conflicts_on if n in plan.params}
        shared = sorted(mine & {show(other.params[n]) for n in conflicts_on if n in other.params})
        if not shared:
            return None
        return f"both change the data of {', '.join(shared)} ({', '.join(conflicts_on)})"
    mine_written, theirs = plan_writes(plan), plan_writes(other)
    if mine_written is None or theirs is None:
        return "one of them runs a step that may write any table"
    common = sorted(mine_written & theirs)
    return f"both write {', '.join(common)}" if common else None


def _name(table: str) -> str:
    return table.lower()
