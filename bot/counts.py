"""A plan's row counts on its target: what the request shows and the start counts again."""

from __future__ import annotations

from bot.domain.plan import Plan
from bot.domain.ports import Target
from bot.errors import QueryFailed


def plan_counts(plan: Plan, target: Target, journal_key: str | None = None) -> dict[str, int]:
    """The rows each step with a count query touches on ``target`` now; a count that fails
    raises QueryFailed naming its step. A rollback's counts read the journal of the run it
    undoes: ``:migration_id`` is that run's ``journal_key`` (else a placeholder), and the
    bot's tables are created first, should that run have failed before it made them."""
    if journal_key is not None:
        target.prepare()
    bound = {**plan.params, "migration_id": journal_key or "dry-run"}
    counts: dict[str, int] = {}
    for step in plan.steps:
        if step.count_sql:
            try:
                counts[step.name] = target.count(step.count_sql, bound)
            except QueryFailed as exc:
                raise exc.naming(f"the row count of step {step.name!r}") from exc
    return counts
