"""Approval policy: who may approve a migration, how many must, and for how long it holds.

Pure: the caller passes the approver's group memberships, the prior approvals and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.lifecycle import State
from bot.errors import Refused


class ApprovalPolicy(BaseModel):
    """A target's approval rules, from configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: list[str] = Field(default_factory=list, description="Slack user ids")
    approver_groups: list[str] = Field(default_factory=list, description="Slack user group ids")
    required: int = Field(default=1, ge=1, le=10)
    ttl_hours: float = Field(default=24.0, gt=0)

    @property
    def ttl(self) -> timedelta:
        """How long a request and its approvals stay valid."""
        return timedelta(hours=self.ttl_hours)

    def describe(self) -> str:
        """Who may approve, in Slack mention syntax."""
        who = [f"<@{u}>" for u in self.approvers] + [
            f"<!subteam^{g}>" for g in self.approver_groups
        ]
        return ", ".join(who) if who else "nobody (no approvers are configured)"


@dataclass(frozen=True)
class PriorApproval:
    """An approval already recorded for the migration."""

    user: str
    plan_hash: str
    at: datetime


@dataclass(frozen=True)
class Verdict:
    """The outcome of a valid approval: how many count now and whether that is enough."""

    count: int
    required: int

    @property
    def complete(self) -> bool:
        """Whether the migration now has all the approvals it needs."""
        return self.count >= self.required


def expires_at(policy: ApprovalPolicy, requested_at: datetime) -> datetime:
    """When a request made at ``requested_at`` expires if not fully approved."""
    return requested_at + policy.ttl


def valid_approvals(
    policy: ApprovalPolicy, prior: list[PriorApproval], plan_hash: str, now: datetime
) -> list[PriorApproval]:
    """The approvals that still count: for this plan hash and not expired."""
    return [p for p in prior if p.plan_hash == plan_hash and now < p.at + policy.ttl]


def may_approve(policy: ApprovalPolicy, user: str, user_groups: set[str]) -> bool:
    """Whether ``user`` (a member of ``user_groups``) is one of the policy's approvers."""
    return user in policy.approvers or bool(user_groups & set(policy.approver_groups))


def decide(
    policy: ApprovalPolicy,
    *,
    requester: str,
    user: str,
    user_groups: set[str],
    prior: list[PriorApproval],
    requested_hash: str,
    current_hash: str,
    requested_at: datetime,
    now: datetime,
) -> Verdict:
    """Judge an approval by ``user``; raise Refused saying why it does not count."""
    if now >= expires_at(policy, requested_at):
        raise Refused(
            f"this request expired at {expires_at(policy, requested_at):%Y-%m-%d %H:%M} UTC; "
            "ask for a new one with /migrate request"
        )
    if user == requester:
        raise Refused("you requested this migration, so someone else must approve it")
    if not may_approve(policy, user, user_groups):
        raise Refused(f"you are not an approver for this target; approvers: {policy.describe()}")
    if current_hash != requested_hash:
        raise Refused(
            f"the plan changed since it was requested (plan {requested_hash[:10]} is now "
            f"{current_hash[:10]}): nothing was approved; request it again to review the new plan"
        )
    counted = valid_approvals(policy, prior, requested_hash, now)
    if any(p.user == user for p in counted):
        left = policy.required - len(counted)
        more = f"; it needs {left} more from other approvers" if left > 0 else ""
        raise Refused(f"you already approved this{more}")
    return Verdict(count=len(counted) + 1, required=policy.required)


def may_reject(policy: ApprovalPolicy, *, requester: str, user: str, user_groups: set[str]) -> bool:
    """Approvers may reject; a requester may also withdraw their own request."""
    return user == requester or may_approve(policy, user, user_groups)


def still_wanted(policy: ApprovalPolicy, requester: str, approved: list[str]) -> str:
    """How many approvals are still needed and from whom: the policy's approvers minus the
    requester and those who approved already, e.g. "one more from <@U1> or <!subteam^S1>
    (other than <@U0> and <@U2>)"."""
    left = policy.required - len(set(approved))
    if left <= 0:
        return "no more"
    excluded = [requester, *dict.fromkeys(approved)]
    who = [f"<@{u}>" for u in policy.approvers if u not in excluded]
    who += [f"<!subteam^{g}>" for g in policy.approver_groups]
    if not who:
        return f"{left} more, but no other approver is configured"
    text = f"{'one' if left == 1 else left} more from {' or '.join(who)}"
    if policy.approver_groups:
        text += f" (other than {' and '.join(f'<@{u}>' for u in excluded)})"
    return text


def no_longer(migration_id: int, state: State, verb: str) -> str:
    """Why a request in ``state`` can no longer be ``verb``-ed (approved, rejected): what
    happened to it, and what to do instead."""
    n = migration_id
    reasons = {
        State.APPROVED: f"#{n} was already approved and starts when due; /migrate cancel {n}"
        " stops it",
        State.RUNNING: f"#{n} was already approved and is running; /migrate cancel {n} stops it"
        " at the next boundary",
        State.CANCELLING: f"#{n} was approved and is being cancelled",
        State.PAUSED: f"#{n} was approved and is paused; /migrate resume {n} or /migrate cancel"
        f" {n}",
        State.SUCCEEDED: f"#{n} was approved and has already run",
        State.FAILED: f"#{n} was approved and its run failed; /migrate status {n} says why",
        State.REJECTED: f"#{n} was already rejected",
        State.CANCELLED: f"#{n} was cancelled; request it again to run it",
        State.EXPIRED: f"#{n} expired before it was approved; request it again to run it",
    }
    return f"{reasons.get(state, f'#{n} is {state.value}')}: there is nothing to {verb}"
