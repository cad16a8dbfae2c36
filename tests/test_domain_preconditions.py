"""Runbook preconditions (pure domain): queries the target's data must pass before a plan is
made, whose failure refuses the plan with the runbook's own message."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.runbook import Precondition, Runbook


def _runbook(*preconditions: dict[str, Any]) -> Runbook:
    return Runbook.model_validate(
        {
            "name": "roles",
            "description": "map roles",
            "targets": ["staging"],
            "parameters": {"tenant": {"type": "int"}},
            "preconditions": list(preconditions),
            "steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1"}],
        }
    )


MISSING = {
    "name": "role-exists",
    "sql": "SELECT COUNT(*) FROM Users WHERE TenantId = :tenant",
    "message": "{value} user(s) of tenant {tenant} need role X,\n  which is missing",
}


def test_a_failing_precondition_says_its_message_filled_in() -> None:
    """The value found and the parameters fill the message; the precondition, the value and
    the expectation follow it; the message's folded lines read as one."""
    pre = _runbook(MISSING).preconditions[0]
    assert pre.expect == "== 0"
    assert pre.refusal(12, {"tenant": 3}) == (
        "12 user(s) of tenant 3 need role X, which is missing"
        " (precondition role-exists: found 12, expected == 0)"
    )


@pytest.mark.parametrize(
    ("value", "expect", "passes"),
    [
        (0, "== 0", True),
        (None, "== 0", True),  # no row counts as 0
        (Decimal(0), "== 0", True),
        (1, "== 0", False),
        (Decimal(2), "> 1", True),
        ("zero", "== 0", False),  # not a number: never passes
    ],
)
def test_a_precondition_passes_when_its_value_meets_expect(
    value: object, expect: str, passes: bool
) -> None:
    """Any numeric value the database returns is compared as written."""
    pre = Precondition.model_validate({**MISSING, "expect": expect})
    assert (pre.refusal(value, {"tenant": 1}) is None) is passes


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"expect": "none please"}, "not a comparison"),
        ({"sql": "SELECT :ghost"}, "preconditions.role-exists uses undeclared parameter(s) :ghost"),
        ({"message": "{users} have no role"}, "message uses {users}"),
        ({"message": ""}, "at least 1 character"),
        ({"name": "Role Exists"}, "name"),
    ],
)
def test_invalid_preconditions_are_rejected_with_the_reason(
    change: dict[str, Any], fragment: str
) -> None:
    """A bad precondition fails the runbook's validation, and the message says what is wrong."""
    with pytest.raises(ValueError) as info:
        _runbook({**MISSING, **change})
    assert fragment in str(info.value)


def test_precondition_names_are_unique() -> None:
    """Two preconditions of one name would make a refusal ambiguous."""
    with pytest.raises(ValueError, match=r"repeated: \['role-exists'\]"):
        _runbook(MISSING, MISSING)


def test_a_runbook_without_preconditions_keeps_its_digest() -> None:
    """Preconditions came later: a runbook without any hashes as it did before the field
    existed (so requests made before the upgrade keep their plan hash); adding one changes
    its digest."""
    bare = _runbook()
    later = {"conflicts_on", "on_conflict", "preconditions", "after_rollback", "estimate"}
    before = bare.model_dump_json(exclude=later)
    assert bare.digest == hashlib.sha256(before.encode()).hexdigest()
    assert _runbook(MISSING).digest != bare.digest
