"""The ``journal`` (and ``journalled_only``) option of a batch step: how a runbook spells it,
what it plans into, what the dry run shows, and that runbooks without it keep their digest
(so their plan hashes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bot.adapters import step_text
from bot.domain.planned import PlannedBatch
from bot.domain.steps import BatchStep

MOVE: dict[str, Any] = {
    "name": "move-tasks",
    "kind": "batch",
    "table": "Tasks",
    "key": "Id",
    "where": "TenantId = :source_tenant",
    "update": "TenantId = :target_tenant",
}


@pytest.mark.parametrize(
    ("journal", "table"),
    [(True, "barq_journal"), ({}, "barq_journal"), ({"table": "ops.moves"}, "ops.moves")],
)
def test_journal_plans_into_the_journal_table(journal: Any, table: str) -> None:
    step = BatchStep.model_validate({**MOVE, "journal": journal})
    assert step.batch_plan("postgresql").journal == table


def test_no_journal_by_default_and_with_false() -> None:
    assert BatchStep.model_validate(MOVE).batch_plan("sqlite").journal is None
    assert BatchStep.model_validate({**MOVE, "journal": False}).journal is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"insert": {"into": "Copy", "columns": ["Id"], "select": "Id"}}, "has 'insert'"),
        ({"transform": {"hook": "h.py:f", "read": ["A"], "write": ["B"]}}, "has 'transform'"),
    ],
)
def test_only_an_update_step_may_journal(change: dict[str, Any], message: str) -> None:
    step = {k: v for k, v in MOVE.items() if k != "update"}
    with pytest.raises(ValidationError, match=message):
        BatchStep.model_validate({**step, **change, "journal": True})


def test_a_bad_journal_table_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="pattern"):
        BatchStep.model_validate({**MOVE, "journal": {"table": "barq_journal; DROP TABLE x"}})


def test_a_step_without_journal_serializes_as_before_the_option() -> None:
    """The runbook digest hashes the steps' JSON: no ``journal`` key unless one is set."""
    assert "journal" not in json.loads(BatchStep.model_validate(MOVE).model_dump_json())
    journalled = BatchStep.model_validate({**MOVE, "journal": True}).model_dump()
    assert journalled["journal"] == {"table": "barq_journal"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_the_dry_run_says_each_batch_journals_what_it_updates(dialect: str) -> None:
    step = BatchStep.model_validate({**MOVE, "journal": True}).planned(1, dialect, {})
    assert isinstance(step, PlannedBatch)
    shown = step_text.body(step, dialect)
    assert "journals the keys it updates into `barq_journal`" in shown
    assert "in the same transaction as the update" in shown
    assert shown.count("barq_journal") >= 2, "the statement that journals is shown too"


def test_journalled_only_plans_the_journal_to_read_and_the_dry_run_says_so() -> None:
    step = BatchStep.model_validate({**MOVE, "journalled_only": True})
    assert step.batch_plan("sqlite").journalled_only == "barq_journal"
    assert step.batch_plan("sqlite").journal is None
    planned = step.planned(1, "postgresql", {})
    assert isinstance(planned, PlannedBatch)
    assert "changes only the keys journalled in `barq_journal`" in step_text.body(
        planned, "postgresql"
    )
    assert "journalled_only" not in json.loads(BatchStep.model_validate(MOVE).model_dump_json())
