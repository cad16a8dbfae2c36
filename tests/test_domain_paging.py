"""What a page says (bot/domain/paging.py): the one line, and the details."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.domain import paging
from bot.domain.lifecycle import State
from bot.domain.records import Migration, StepRun
from tests.test_plan_steps import all_kinds_plan

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def migration(**fields: Any) -> Migration:
    """A failed migration #7 of the all-kinds plan, with ``fields`` replaced."""
    target = fields.pop("target", None)
    plan = all_kinds_plan()
    if target is not None:
        plan = plan.model_copy(update={"target": target})
    m = Migration(
        7, "barq-0123abcd", plan, {}, State.FAILED, "U0ALICE", T0, T0, T0, T0, False, False, 0,
        "boom", [],
    )  # fmt: skip
    return replace(m, **fields)


def _run(index: int, name: str, kind: str, state: str, rows: int, detail: str = "") -> StepRun:
    return StepRun("run", index, name, kind, state, rows, detail or None, T0, T0)


def test_the_summary_says_timeout_check_or_failure() -> None:
    m = migration()
    pg = "canceling statement due to statement timeout"
    assert "step 3 (big) exceeded its timeout: canceling" in paging.failure_reason(
        m, 3, "big", "batch", pg
    )
    assert "check 4 (balanced) failed: expected 0, got 2" in paging.failure_reason(
        m, 4, "balanced", "check", "expected 0, got 2\nmore"
    )
    assert f"#7 {m.runbook} on {m.target}: step 1 (x) failed: no such column" in (
        paging.failure_reason(m, 1, "x", "sql", "no such column")
    )


def test_the_details_name_the_step_error_rows_and_backup() -> None:
    backup = {"location": "/var/b/x.dump", "verified": True, "size_bytes": 2048}
    m = migration(backups=[backup])
    runs = [_run(1, "copy", "batch", "succeeded", 120), _run(2, "move", "sql", "failed", 0, "dup")]
    found = paging.details(m, runs)
    assert found["step"] == "2 (move, sql)" and found["error"] == "dup"
    assert found["rows_committed"] == {"1. copy": 120, "2. move": 0}
    assert found["backup"] == "/var/b/x.dump (verified, 2,048 bytes)"
