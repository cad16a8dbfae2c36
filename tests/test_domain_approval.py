"""Approval policy (pure): who may approve, how many, plan binding and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.approval import ApprovalPolicy, PriorApproval, decide
from bot.errors import Refused

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POLICY = ApprovalPolicy(approvers=["UDAVE"], approver_groups=["SDBA"], required=2, ttl_hours=24)


def _decide(user: str, groups: set[str] | None = None, **kw: object) -> object:
    args: dict[str, object] = {
        "requester": "UALICE",
        "user": user,
        "user_groups": groups or set(),
        "prior": [],
        "requested_hash": "a" * 64,
        "current_hash": "a" * 64,
        "requested_at": T0,
        "now": T0 + timedelta(hours=1),
    }
    args.update(kw)
    return decide(POLICY, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "groups", "kw", "reason"),
    [
        ("UALICE", {"SDBA"}, {}, "you requested this migration"),
        ("UEVE", set(), {}, "you are not an approver"),
        ("UEVE", {"SOTHER"}, {}, "you are not an approver"),
        ("UDAVE", set(), {"current_hash": "b" * 64}, "the plan changed since it was requested"),
        ("UDAVE", set(), {"now": T0 + timedelta(hours=24)}, "this request expired"),
        (
            "UDAVE",
            set(),
            {"prior": [PriorApproval("UDAVE", "a" * 64, T0)]},
            "you already approved this; it needs 1 more",
        ),
    ],
)
def test_refusals_say_why(user: str, groups: set[str], kw: dict[str, object], reason: str) -> None:
    """Self-approval, outsiders, changed plans, expiry and double clicks are refused."""
    with pytest.raises(Refused) as info:
        _decide(user, groups, **kw)
    assert reason in str(info.value)


def test_named_user_and_group_member_each_count_once() -> None:
    """Two distinct approvers complete a policy that requires two."""
    first = _decide("UDAVE")
    assert (first.count, first.complete) == (1, False)  # type: ignore[attr-defined]
    second = _decide("UBOB", {"SDBA"}, prior=[PriorApproval("UDAVE", "a" * 64, T0)])
    assert (second.count, second.complete) == (2, True)  # type: ignore[attr-defined]


def test_approvals_of_another_plan_or_expired_do_not_count() -> None:
    """Only approvals of this exact plan, still fresh, count towards the total."""
    prior = [
        PriorApproval("UCAROL", "b" * 64, T0),
        PriorApproval("UDAVE", "a" * 64, T0 - timedelta(hours=30)),
    ]
    verdict = _decide("UBOB", {"SDBA"}, prior=prior, requested_at=T0 - timedelta(hours=1))
    assert verdict.count == 1  # type: ignore[attr-defined]
