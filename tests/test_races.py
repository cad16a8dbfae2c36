"""Decisions on one migration race each other: two last approvals, approve against reject,
approve against cancel. They are serialized, so exactly one outcome wins and the loser is told
what happened, on SQLite and PostgreSQL state stores alike.

To make the race happen every round, each decision waits (briefly, at a barrier) for the other
to reach the same point before it reads the earlier approvals: without serialization both read
before either writes; with it, the second cannot get there until the first has committed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.domain.lifecycle import State
from bot.errors import Refused
from bot.local.barq_schema import create_demo_database
from tests import harness
from tests.harness import Harness

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
ROUNDS = 50
NOOP = """
name: noop
description: checks one thing and changes nothing
targets: [staging, production]
parameters:
  round: {type: int}
conflicts_on: [round]
steps:
  - name: one
    kind: check
    sql: SELECT 1
    expect: "== 1"
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "noop.yaml").write_text(NOOP)
    target = create_demo_database(tmp_path / "target.db", now=harness.now())
    state = (
        {"database_url": request.getfixturevalue("pg_url")} if request.param == "postgresql" else {}
    )
    bot = await harness.start(tmp_path, harness.policies(target, target), folder, **state)
    yield bot
    await bot.close()


def _meet_before_reading_approvals(h: Harness) -> Callable[[], None]:
    """Make each decision wait up to 50 ms for the other one before it reads the earlier
    approvals; return the function that rearms the barrier for the next round."""
    barrier = threading.Barrier(2)
    read = h.bot.store.prior_approvals

    def prior_approvals(migration_id: int) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=0.05)
        return read(migration_id)

    h.bot.store.prior_approvals = prior_approvals  # type: ignore[method-assign]
    return barrier.reset


async def _both(*calls: Any) -> list[Any]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_two_last_approvals_at_the_same_moment_start_the_run_exactly_once(
    h: Harness,
) -> None:
    """Production needs two approvals; bob and dave click at the same instant, 50 times: each
    time the migration is approved, one of the two clicks is the one that completed it, and
    the run starts once."""
    rearm = _meet_before_reading_approvals(h)
    service = h.bot.service
    for n in range(ROUNDS):
        rearm()
        m, _ = await service.request(ALICE, "noop", {"round": str(n)}, "production")
        replies = await _both(
            service.approve(m.id, BOB, m.plan.hash), service.approve(m.id, DAVE, m.plan.hash)
        )
        assert sorted(r.state.value for r in replies) == ["approved", "requested"], replies
        assert len(h.bot.store.prior_approvals(m.id)) == 2
    await h.settle()
    for m in h.bot.store.recent(ROUNDS):
        starts = [a for a in h.bot.store.audit_trail(m.id) if a.action == "start"]
        assert (m.state, len(starts)) == (State.SUCCEEDED, 1)


async def test_approve_against_reject_one_wins_and_the_other_is_told_why(h: Harness) -> None:
    """bob approves while carol rejects: one decision stands, the other is refused with what
    happened to the request, never a wrong reason."""
    service = h.bot.service
    outcomes = set()
    for n in range(ROUNDS // 5):
        m, _ = await service.request(ALICE, "noop", {"round": str(n)}, "staging")
        approved, rejected = await _both(
            service.approve(m.id, BOB, m.plan.hash), service.reject(m.id, CAROL, "not now")
        )
        final = h.bot.store.get(m.id).state
        if final is State.REJECTED:
            assert isinstance(approved, Refused) and rejected.state is State.REJECTED
            assert f"#{m.id} was already rejected: there is nothing to approve" in str(approved)
        else:
            assert isinstance(rejected, Refused) and approved.state is State.APPROVED
            said = str(rejected)  # approved, then running or run by the time carol got there
            assert said.startswith(f"#{m.id} was ") and "approved" in said
            assert said.endswith("there is nothing to reject"), said
        outcomes.add(final)
        await h.settle()
    assert outcomes <= {State.REJECTED, State.APPROVED, State.RUNNING, State.SUCCEEDED}


async def test_approve_against_cancel_never_runs_a_cancelled_request(h: Harness) -> None:
    """alice cancels while bob approves: a request cancelled before its run never starts, an
    approval that lost is told the request was cancelled, a run that had already started is
    asked to stop at its next boundary, and one that had finished says so."""
    service = h.bot.service
    for n in range(ROUNDS // 5):
        m, _ = await service.request(ALICE, "noop", {"round": str(n)}, "staging")
        approved, cancelled = await _both(
            service.approve(m.id, BOB, m.plan.hash), service.cancel(m.id, ALICE)
        )
        if isinstance(approved, BaseException):
            assert f"#{m.id} was cancelled; request it again" in str(approved)
        await h.settle()
        final = h.bot.store.get(m.id)
        starts = [a for a in h.bot.store.audit_trail(m.id) if a.action == "start"]
        if isinstance(cancelled, BaseException):  # too late: the one-step run had finished
            assert str(cancelled) == f"#{m.id} succeeded; there is nothing to cancel"
            assert (final.state, len(starts)) == (State.SUCCEEDED, 1)
        elif cancelled.state is State.CANCELLED:  # before the run: it never starts
            assert (final.state, starts) == (State.CANCELLED, [])
        else:  # the run had started: it stops at its next boundary (or had none left)
            assert cancelled.state is State.CANCELLING and final.cancel_requested
            assert final.state in (State.CANCELLED, State.SUCCEEDED) and len(starts) == 1
