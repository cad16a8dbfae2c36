"""How each kind of planned step reads in a dry run, and what a failed one leaves (pure).

A kind registers the body of its dry-run text with ``@renders(PlannedX, ...)``, saying what a
failure of it leaves behind; blocks.py adds the heading and the row count.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.adapters.targets.batch_hooks import skipped_rows
from bot.adapters.targets.batch_sql import batch_sql
from bot.adapters.targets.dialects import dialect_for
from bot.domain.planned import (
    BatchPlan,
    PlannedBackup,
    PlannedBase,
    PlannedBatch,
    PlannedCheck,
    PlannedCommand,
    PlannedParallel,
    PlannedRestore,
    PlannedSql,
    PlannedStep,
    kind_of,
)
from bot.domain.progress import StepTotal, fold
from bot.domain.records import StepRun

S = TypeVar("S", bound=PlannedBase)
Body = Callable[[S, str], str]  # (planned step, dialect) -> mrkdwn


@dataclass(frozen=True)
class _Renderer:
    body: Body[Any]
    failure_leaves: str  # what a failed step of the kind leaves behind
    in_batches: bool  # commits batch by batch: a failed or stopped step keeps those rows


_RENDERERS: dict[str, _Renderer] = {}


def renders(
    step_type: type[S], *, failure_leaves: str = "was rolled back", in_batches: bool = False
) -> Callable[[Body[S]], Body[S]]:
    """Register the decorated function as the dry-run text of ``step_type``'s steps."""

    def register(body: Body[S]) -> Body[S]:
        _RENDERERS[kind_of(step_type)] = _Renderer(body, failure_leaves, in_batches)
        return body

    return register


def body(step: PlannedStep, dialect: str) -> str:
    """What ``step`` will do on ``dialect``, as shown in a dry run."""
    return _RENDERERS[step.kind].body(step, dialect)


def kinds() -> frozenset[str]:
    """The kinds that have a renderer."""
    return frozenset(_RENDERERS)


def in_batches(kind: str) -> bool:
    """Whether steps of ``kind`` commit batch by batch, each with its checkpoint."""
    renderer = _RENDERERS.get(kind)
    return renderer is not None and renderer.in_batches


def totals(runs: list[StepRun]) -> list[StepTotal]:
    """Each step's figures over all its executions (see bot.domain.progress.fold)."""
    return fold(runs, in_batches)


def left_behind(run: StepRun | StepTotal) -> str | None:
    """What a failed or stopped step run left in the data, or None when that goes unsaid."""
    renderer = _RENDERERS.get(run.kind)
    if renderer is not None and renderer.in_batches:
        return f"committed {run.rows:,} rows in batches up to its last checkpoint" + (
            "; the failing batch was rolled back" if run.state == "failed" else ""
        )
    if run.state != "failed":
        return None
    return renderer.failure_leaves if renderer is not None else "was rolled back"


def code(sql: str) -> str:
    """A code block (triple backticks inside are defused)."""
    return "```" + sql.strip().replace("```", "'''") + "```"


@renders(PlannedSql)
def _sql(step: PlannedSql, dialect: str) -> str:
    return code(step.sql)


@renders(PlannedCheck, failure_leaves="changed nothing")
def _check(step: PlannedCheck, dialect: str) -> str:
    text = code(step.sql)
    if step.expect:
        text += f"\nPasses when the value is `{step.expect}`"
    if step.equals_sql:
        text += f"\nPasses when it equals:\n{code(step.equals_sql)}"
    return text


@renders(PlannedBatch, in_batches=True)
def _batch(step: PlannedBatch, dialect: str) -> str:
    return _batches(step.batch, dialect)


@renders(PlannedParallel, in_batches=True)
def _parallel(step: PlannedParallel, dialect: str) -> str:
    return (
        f"For each `:{step.branch_param}` from the query below, {step.concurrency} at a "
        f"time, each branch with its own checkpoints:\n{code(step.over_sql)}\n"
        + _batches(step.batch, dialect)
    )


def _batches(plan: BatchPlan, dialect: str) -> str:
    s = plan.settings
    text = (
        f"In keyset batches over `{plan.table}` by `{plan.key}` (first {s.size:,} rows, then "
        f"sized to {s.budget_ms} ms per transaction within {s.min:,}–{s.max:,}; each batch "
        "commits with its checkpoint)"
    )
    statements = batch_sql(dialect_for(dialect), plan)
    if statements.kind == "hook":
        reads, writes = ", ".join(plan.read), ", ".join(plan.write)
        text += f"\nPython hook `{plan.hook}` reads {reads} and writes {writes} of the rows"
        text += f" each batch selects:{code(statements.change)}"
        text += f"one row at a time with:{code(statements.row_update or '')}"
        return text + (
            "A row the hook refuses (RowSkipped) is left unchanged and recorded, with its "
            f"reason, in `{skipped_rows.name}`; the step's result counts them."
        )
    if statements.journalled:
        text += (
            f"\nEach batch journals the keys it updates into `{plan.journal}` (migration_id, "
            "table_name, row_id) in the same transaction as the update"
        )
    if plan.journalled_only:
        text += (
            f"\nEach batch changes only the keys journalled in `{plan.journalled_only}` for "
            f"{plan.table} by the run (in a rollback, by the run it undoes)"
        )
    runs = [statements.journal, statements.change]
    return text + "\nEach batch runs:" + "".join(code(sql) for sql in runs if sql)


@renders(
    PlannedCommand,
    failure_leaves="failed outside any transaction: check what the program changed",
)
def _command(step: PlannedCommand, dialect: str) -> str:
    command = step.shown or step.command
    text = "Runs (no shell):\n" + code(shlex.join(command.argv))
    if command.env:
        env = "\n".join(f"{key}={value}" for key, value in command.env.items())
        text += f"\nWith the environment:\n{code(env)}"
    return text


@renders(PlannedBackup, failure_leaves="changed nothing")
def _backup(step: PlannedBackup, dialect: str) -> str:
    tables = ", ".join(step.tables) if step.tables else "the whole database"
    return f"Backs up {tables} and verifies the backup; its location is recorded."


@renders(
    PlannedRestore,
    failure_leaves="may have left the database partly restored: check it before going on",
)
def _restore(step: PlannedRestore, dialect: str) -> str:
    return "Restores this migration's latest verified backup over the target."
