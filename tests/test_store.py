"""The state store and its lifecycle, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect
from sqlalchemy.exc import IntegrityError

from bot.adapters.outbox import Outbox
from bot.adapters.schema_migrations import downgrade, upgrade
from bot.adapters.store import Store, state_engine
from bot.adapters.tables import approvals, metadata
from bot.domain.lifecycle import Event, State
from bot.domain.plan import Plan
from bot.errors import InvalidTransition, NotFound, Refused

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _plan(hash_: str = "a" * 64) -> Plan:
    return Plan(
        runbook="tenant-consolidation",
        description="d",
        runbook_digest="r",
        target="staging",
        dialect="sqlite",
        params={"source_tenant": 3, "target_tenant": 7},
        steps=(),
        rollback=(),
        hash=hash_,
    )


@pytest.fixture
def store(target_url: str) -> Store:
    engine = state_engine(target_url)
    upgrade(engine)
    return Store(engine)


def test_schema_migrations_match_the_models(target_url: str) -> None:
    """Alembic's head creates exactly the tables the code declares, and downgrades cleanly."""
    engine = create_engine(target_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


def test_lifecycle_of_a_migration_is_recorded_with_who_and_when(store: Store) -> None:
    """Request, approve, start, finish: each step moves the state and lands in the audit log."""
    m, _ = store.create(_plan(), {"move-tasks": 400}, "U0ALICE", T0)
    assert (m.id, m.state, m.counts, m.requested_at) == (
        1,
        State.REQUESTED,
        {"move-tasks": 400},
        T0,
    )
    m = store.record_decision(
        m.id, user="U0BOB", decision="approve", plan_hash=m.plan.hash, now=T0, event=Event.APPROVE
    )
    assert m.state is State.APPROVED
    later = T0 + timedelta(minutes=1)
    m = store.transition(m.id, Event.START, actor="bot", now=later, started_at=later)
    m = store.transition(m.id, Event.SUCCEED, actor="bot", now=later, finished_at=later)
    assert (m.state, m.started_at, m.finished_at) == (State.SUCCEEDED, later, later)
    trail = [(a.actor, a.action, a.at) for a in store.audit_trail(m.id)]
    assert trail == [
        ("U0ALICE", "request", T0),
        ("U0BOB", "approve", T0),
        ("bot", "start", later),
        ("bot", "succeed", later),
    ]
    assert store.audit_trail(m.id)[1].detail == {"plan_hash": m.plan.hash}


def test_illegal_transition_is_refused_and_changes_nothing(store: Store) -> None:
    """Starting an unapproved migration raises and leaves it as it was."""
    m, _ = store.create(_plan(), {}, "U0ALICE", T0)
    with pytest.raises(InvalidTransition, match="cannot start a migration that is requested"):
        store.transition(m.id, Event.START, actor="bot", now=T0)
    assert store.get(m.id).state is State.REQUESTED
    assert [a.action for a in store.audit_trail(m.id)] == ["request"]


def test_a_transition_inside_a_failed_transaction_is_rolled_back(store: Store) -> None:
    """Store calls grouped in a transaction commit or roll back together."""
    m, _ = store.create(_plan(), {}, "U0ALICE", T0)
    with pytest.raises(RuntimeError), store.transaction():
        store.transition(m.id, Event.CANCEL, actor="U0ALICE", now=T0)
        raise RuntimeError("boom")
    assert store.get(m.id).state is State.REQUESTED


def test_one_decision_per_user(store: Store) -> None:
    """A second decision by the same user is refused and records nothing."""
    m, _ = store.create(_plan(), {}, "U0ALICE", T0)
    store.record_decision(m.id, user="U0BOB", decision="approve", plan_hash=m.plan.hash, now=T0)
    with pytest.raises(Refused, match="already chose approve"):
        store.record_decision(
            m.id, user="U0BOB", decision="reject", plan_hash=m.plan.hash, now=T0, reason="x"
        )
    assert [p.user for p in store.prior_approvals(m.id)] == ["U0BOB"]


def test_unknown_migration_is_not_found(store: Store) -> None:
    """Asking for a missing id says so."""
    with pytest.raises(NotFound, match="no migration #99"):
        store.get(99)


def test_step_runs_record_rows_and_outcome(store: Store) -> None:
    """Step runs keep their rows, state and detail, in order."""
    m, _ = store.create(_plan(), {}, "U0ALICE", T0)
    store.step_started(m.id, "run", 1, "move-tasks", "sql", T0)
    store.step_finished(m.id, "run", 1, state="succeeded", rows=400, detail=None, now=T0)
    store.step_started(m.id, "run", 2, "check", "check", T0)
    store.step_finished(m.id, "run", 2, state="failed", rows=0, detail="got 3", now=T0)
    runs = [(r.step_index, r.state, r.rows, r.detail) for r in store.step_runs(m.id)]
    assert runs == [(1, "succeeded", 400, None), (2, "failed", 0, "got 3")]


def test_outbox_keeps_only_the_newest_version_of_a_message(store: Store) -> None:
    """Queued updates of one message collapse to the newest; a reply waits for its parent."""
    outbox = Outbox(store)
    outbox.put("progress:1", "C1", {"text": "step 1"}, T0)
    outbox.put("outcome:1", "C1", {"text": "done"}, T0, thread_key="progress:1")
    outbox.put("progress:1", "C1", {"text": "step 2"}, T0)
    due = outbox.due(T0)
    assert [(d.key, d.payload["text"]) for d in due] == [("progress:1", "step 2")]
    outbox.sent(due[0], "C1", "111.1", T0)
    assert outbox.location("progress:1") == ("C1", "111.1")
    (reply,) = outbox.due(T0)
    assert (reply.key, reply.thread_key) == ("outcome:1", "progress:1")
    outbox.failed(reply, "ratelimited", T0, retry_in=timedelta(seconds=30))
    assert outbox.due(T0) == []
    assert [d.key for d in outbox.due(T0 + timedelta(seconds=31))] == ["outcome:1"]
    assert outbox.undelivered() == 1


def test_the_state_database_enforces_its_foreign_keys(store: Store) -> None:
    """An approval of a migration that does not exist is refused by the database itself,
    on SQLite as on PostgreSQL."""
    row = {
        "migration_id": 99,
        "user_id": "U0BOB",
        "decision": "approve",
        "plan_hash": "a",
        "at": T0,
    }
    with pytest.raises(IntegrityError), store.transaction() as conn:
        conn.execute(insert(approvals).values(**row))


def test_the_manual_throttle_is_kept_until_cleared(store: Store) -> None:
    """``/migrate throttle``'s level is part of the migration's record; ``off`` clears it."""
    m, _ = store.create(_plan(), {"move-tasks": 400}, "U0ALICE", T0)
    assert m.manual_throttle is None
    assert store.set_fields(m.id, T0, manual_throttle=0.375).manual_throttle == 0.375
    assert store.get(m.id).manual_throttle == 0.375
    assert store.set_fields(m.id, T0, manual_throttle=None).manual_throttle is None
