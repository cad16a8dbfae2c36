"""Planned steps as one type per kind: how each runbook step resolves, plans stored before the
steps were typed, the plan hash, and each kind's dry-run text and failure note (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from bot.adapters import blocks, step_text
from bot.adapters.runbook_files import load_runbook
from bot.domain.plan import Plan, build_plan
from bot.domain.planned import (
    PlannedBackup,
    PlannedBatch,
    PlannedCheck,
    PlannedCommand,
    PlannedParallel,
    PlannedRestore,
    PlannedSql,
    PlannedStep,
    kind_of,
)
from bot.domain.records import StepRun
from bot.executors import registry

DATA = Path(__file__).resolve().parent / "data"
# Saved by the code before this change, from all-kinds.yaml with n=1 who=abc on sqlite.
STORED = json.loads((DATA / "plan-before-typed-steps.json").read_text())
BATCHES = (
    "In keyset batches over `Items` by `Id` (first 1,000 rows, then sized to 200 ms per "
    "transaction within 100–100,000; each batch commits with its checkpoint)\nEach batch runs:"
)


def all_kinds_plan() -> Plan:
    runbook = load_runbook(DATA / "all-kinds.yaml")
    return build_plan(runbook, {"n": 1, "who": "abc"}, "staging", "sqlite")


def test_each_runbook_step_resolves_into_its_kinds_planned_type() -> None:
    """Every kind has its own planned type, holding what that kind needs."""
    plan = all_kinds_plan()
    assert [type(s) for s in (*plan.steps, *plan.rollback)] == [
        PlannedSql,
        PlannedCheck,
        PlannedCheck,
        PlannedBatch,
        PlannedBatch,
        PlannedParallel,
        PlannedCommand,
        PlannedBackup,
        PlannedBackup,
        PlannedRestore,
    ]
    command = plan.steps[6]
    assert isinstance(command, PlannedCommand)
    assert command.command.argv == ("echo", "abc", "1", "{target.host}")
    assert command.command.env == {"X": "abc", "PW": "{target.password}"}


def test_every_kind_of_planned_step_has_an_executor_and_a_renderer() -> None:
    """A kind added to the planned steps' union without its executor or renderer is caught."""
    union, _discriminator = get_args(PlannedStep)
    kinds = {kind_of(step_type) for step_type in get_args(union)}
    assert len(kinds) == 7
    assert registry.kinds() == kinds
    assert step_text.kinds() == kinds


def test_a_plan_stored_before_the_steps_were_typed_loads_into_the_same_steps() -> None:
    """A plan saved as one flat record per step (every field of every kind) still loads, and
    its steps equal those planned now."""
    stored = Plan.model_validate(STORED)
    plan = all_kinds_plan()
    assert (stored.steps, stored.rollback) == (plan.steps, plan.rollback)
    assert Plan.model_validate(plan.model_dump(mode="json")) == plan


def test_typing_the_steps_leaves_the_plan_hash_unchanged() -> None:
    """Approvals given before still match: the hash covers the runbook's digest, the target,
    the dialect and the parameters, not the shape of the planned steps."""
    assert all_kinds_plan().hash == STORED["hash"]


@pytest.mark.parametrize(
    ("index", "text"),
    [
        (
            1,
            "*1. s1* (sql) — plain sql\nRows it will touch now: *7*\n"
            "```UPDATE Items SET Hits = :n```",
        ),
        (2, "*2. c1* (check)\n```SELECT 1```\nPasses when the value is `== 1`"),
        (3, "*3. c2* (check)\n```SELECT 1```\nPasses when it equals:\n```SELECT 1```"),
        (
            4,
            f"*4. b1* (batch)\nRows it will touch now: *7*\n{BATCHES}```UPDATE Items SET\n"
            "Hits = Hits + 1\nWHERE Id >= :_barq_from AND Id <= :_barq_next AND (\nTenantId = :n"
            "\n)```",
        ),
        (
            6,
            "*6. p1* (parallel)\nRows it will touch now: *7*\nFor each `:tenant` from the query "
            "below, 3 at a time, each branch with its own checkpoints:\n```SELECT DISTINCT "
            f"TenantId FROM Items```\n{BATCHES}```UPDATE Items SET\nHits = 0\nWHERE Id >= "
            ":_barq_from AND Id <= :_barq_next AND (\nTenantId = :tenant\n)```",
        ),
        (
            7,
            "*7. cmd* (command)\nRuns (no shell):\n```echo abc 1 '{target.host}'```\n"
            "With the environment:\n```X=abc\nPW={target.password}```",
        ),
        (8, "*8. bk* (backup)\nBacks up Items and verifies the backup; its location is recorded."),
        (
            9,
            "*9. bk2* (backup)\nBacks up the whole database and verifies the backup; its "
            "location is recorded.",
        ),
        (
            10,
            "*1. rs* (restore) — put it back\nRestores this migration's latest verified backup "
            "over the target.",
        ),
    ],
)
def test_dry_run_text_of_each_kind(index: int, text: str) -> None:
    """Each kind reads in the dry run as it did before its renderer was registered."""
    plan = all_kinds_plan()
    counts = {s.name: 7 for s in plan.steps if s.count_sql}
    sections = [b for b in blocks.plan_message(plan, counts)["blocks"] if b["type"] == "section"]
    assert sections[index - 1]["text"]["text"] == text


@pytest.mark.parametrize(
    ("kind", "state", "left"),
    [
        ("sql", "failed", "was rolled back"),
        ("sql", "stopped", None),
        ("check", "failed", "changed nothing"),
        ("backup", "failed", "changed nothing"),
        ("command", "failed", "failed outside any transaction: check what the program changed"),
        (
            "restore",
            "failed",
            "may have left the database partly restored: check it before going on",
        ),
        (
            "batch",
            "failed",
            "committed 1,200 rows in batches up to its last checkpoint; the failing batch was "
            "rolled back",
        ),
        ("parallel", "stopped", "committed 1,200 rows in batches up to its last checkpoint"),
        ("retired-kind", "failed", "was rolled back"),
    ],
)
def test_what_a_failed_or_stopped_step_leaves_depends_on_its_kind(
    kind: str, state: str, left: str | None
) -> None:
    """The outcome report says what the last step left in the data, by its kind."""
    at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    run = StepRun("run", 2, "step", kind, state, 1200, None, at, at)
    assert step_text.left_behind(run) == left
