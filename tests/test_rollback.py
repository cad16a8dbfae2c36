"""/migrate rollback <id>: a finished run undone by its runbook's rollback steps, as a migration
of its own that is approved, run, reported and audited like a request.

End to end through the in-process bot on SQLite and PostgreSQL: every row is compared before
the run and after its rollback (tests/oracle.py's snapshot), for a consolidation (moved back
row for row from its journal) and for a failed anonymization (restored from its own backup).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.domain.lifecycle import Event, State
from bot.domain.records import Migration
from bot.errors import Refused
from tests import harness, oracle
from tests.harness import APPROVALS, MIGRATIONS, Harness

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"  # BOB and CAROL approve on staging
MOVE = {"source_tenant": "2", "target_tenant": "4"}
KEPT = 900001  # an old audit row whose values the target refuses to clear


@pytest.fixture
async def bot(tmp_path: Path, target_url: str) -> AsyncIterator[tuple[Harness, str]]:
    """The bot with the shipped runbooks, its staging target the seeded ``target_url``."""
    oracle.seed((target_url,))
    h = await harness.start(tmp_path, harness.policies(target_url), ROOT / "runbooks")
    try:
        yield h, target_url
    finally:
        await h.close()


async def _run(h: Harness, runbook: str, params: dict[str, str], state: State) -> Migration:
    """Request ``runbook`` as ALICE, approve it as BOB, run it; it must end in ``state``."""
    m, _ = await h.bot.service.request(ALICE, runbook, params, "staging")
    await h.bot.service.approve(m.id, BOB, m.plan.hash)
    await h.settle()
    done = h.bot.store.get(m.id)
    assert done.state is state, done.error
    return done


async def _roll_back(h: Harness, original: Migration, **kw: Any) -> Migration:
    """CAROL asks for the rollback; CAROL may not approve it, BOB does; it runs."""
    service = h.bot.service
    r, created = await service.rollback(original.id, CAROL, **kw)
    assert created and r.rollback_of == original.id and r.state is State.REQUESTED
    with pytest.raises(Refused, match="someone else must approve"):
        await service.approve(r.id, CAROL, r.plan.hash)
    await service.approve(r.id, BOB, r.plan.hash)
    await h.settle()
    return h.bot.store.get(r.id)


async def test_a_consolidation_rolled_back_has_every_row_back(
    bot: tuple[Harness, str],
) -> None:
    h, url = bot
    before = oracle.snapshot(url)
    m = await _run(h, "tenant-consolidation", MOVE, State.SUCCEEDED)
    assert oracle.snapshot(url) != before, "the consolidation moved nothing"

    r = await _roll_back(h, m)

    assert r.state is State.SUCCEEDED, r.error
    oracle.assert_same_data(oracle.snapshot(url), before)
    names = [s.name for s in r.plan.steps]
    assert names == [
        "restore-tasks",
        "restore-users",
        "restore-audit-logs",
        "journalled-rows-home",
        "users-reference-tenants-after-rollback",
    ]
    moved = {run.name: run.rows for run in h.bot.store.step_runs(r.id)}
    assert moved["restore-tasks"] == 60  # the journalled tasks of tenant 2, no more
    # the approvers saw these counts: the journalled rows it would move back
    assert r.counts == {
        n: moved[n] for n in ("restore-tasks", "restore-users", "restore-audit-logs")
    }
    assert [a.action for a in h.bot.store.audit_trail(m.id)].count("rollback-request") == 1
    assert h.bot.store.audit_trail(r.id)[0].detail["rollback_of"] == m.id
    with pytest.raises(Refused, match=f"was rolled back already by #{r.id}"):
        await h.bot.service.rollback(m.id, CAROL)
    with pytest.raises(Refused, match="a rollback cannot be rolled back"):
        await h.bot.service.rollback(r.id, CAROL)


async def test_a_failed_anonymization_is_restored_from_its_own_backup(
    bot: tuple[Harness, str],
) -> None:
    """Users are anonymized (committed), then clearing the audit values fails on a row the
    target refuses to change; the rollback restores the backup that run took, and its
    after-rollback check passes although one user was anonymized before the run."""
    h, url = bot
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE Users SET Email = 'user' || Id || '@anonymized.com',"
                    " FirstName = 'Anonymous', LastName = 'User', PhoneNumber = NULL"
                    " WHERE Id = (SELECT MIN(Id) FROM Users WHERE TenantId = 2)"
                )
            )
            add_unclearable_audit_row(conn, engine.dialect.name)
    finally:
        engine.dispose()
    before = oracle.snapshot(url)
    m = await _run(h, "data-anonymization", {"tenant": "2"}, State.FAILED)
    assert "clear-old-audit-values" in (m.error or "")
    assert oracle.snapshot(url) != before, "the failed run committed nothing"
    assert m.backups and m.backups[-1]["verified"]

    r = await _roll_back(h, m)

    assert r.state is State.SUCCEEDED, r.error
    oracle.assert_same_data(oracle.snapshot(url), before)
    restored = next(s for s in h.bot.store.step_runs(r.id) if s.name == "restore-backup")
    assert m.backups[-1]["location"] in (restored.detail or "")
    with pytest.raises(Refused, match=f"was rolled back by #{r.id}; request its runbook again"):
        await h.bot.service.resume(m.id, ALICE)


def add_unclearable_audit_row(conn: Any, dialect: str) -> None:
    """Audit row KEPT of tenant 2, three years old, whose values the target refuses to clear
    (a target-side error): clearing old audit values fails on it."""
    conn.execute(
        text(
            "INSERT INTO AuditLogs (Id, TenantId, EntityType, EntityId, Action,"
            " OldValues, NewValues, CreatedAt) VALUES (:id, 2, 'User', 1, 'Update',"
            ' \'{"Email": "old@barq.example"}\', NULL, :at)'
        ),
        {"id": KEPT, "at": harness.now().replace(tzinfo=None) - timedelta(days=3 * 365)},
    )
    _refuse_clearing(conn, dialect, KEPT)


def _refuse_clearing(conn: Any, dialect: str, audit_id: int) -> None:
    """Make the target refuse to clear the values of one audit row (a target-side error)."""
    if dialect == "postgresql":
        conn.execute(
            text(
                f"ALTER TABLE AuditLogs ADD CONSTRAINT ck_keep_{audit_id}"
                f" CHECK (Id <> {audit_id} OR OldValues IS NOT NULL)"
            )
        )
        return
    conn.execute(
        text(
            "CREATE TRIGGER keep_values BEFORE UPDATE ON AuditLogs"
            f" WHEN NEW.Id = {audit_id} AND NEW.OldValues IS NULL"
            " BEGIN SELECT RAISE(ABORT, 'this audit row keeps its values'); END"
        )
    )


# -- refusals, on SQLite only -----------------------------------------------------------------


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness.running(tmp_path, "staging") as h:
        yield h


def _finished(h: Harness, m: Migration, *events: Event) -> Migration:
    """Move ``m`` through ``events`` in the store, as if it had run."""
    now = harness.now()
    for event in events:
        fields: dict[str, Any] = {"started_at": now} if event is Event.START else {}
        if event in (Event.SUCCEED, Event.FAIL):
            fields["finished_at"] = now
        m = h.bot.store.transition(m.id, event, actor="bot", now=now, **fields)
    return m


async def test_a_run_not_finished_must_be_stopped_first(demo: Harness) -> None:
    service = demo.bot.service
    m, _ = await service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    with pytest.raises(Refused, match=rf"has not run.*/migrate cancel {m.id}"):
        await service.rollback(m.id, CAROL)
    demo.approve_in_store(m, BOB)
    running = _finished(demo, demo.bot.store.get(m.id), Event.START)
    with pytest.raises(Refused, match=rf"is running: stop it first with /migrate cancel {m.id}"):
        await service.rollback(running.id, CAROL)
    assert demo.bot.store.rollbacks_of(m.id) == []


async def test_a_runbook_without_rollback_steps_cannot_be_rolled_back(demo: Harness) -> None:
    service = demo.bot.service
    m, _ = await service.request(ALICE, "audit-log-retention", {"years": "2"}, "staging")
    demo.approve_in_store(m, BOB)
    done = _finished(demo, demo.bot.store.get(m.id), Event.START, Event.SUCCEED)
    with pytest.raises(Refused, match="audit-log-retention declares no rollback steps"):
        await service.rollback(done.id, CAROL)


async def test_one_open_rollback_per_run_and_the_run_does_not_resume_meanwhile(
    demo: Harness,
) -> None:
    service = demo.bot.service
    m, _ = await service.request(ALICE, "tenant-consolidation", MOVE, "staging")
    demo.approve_in_store(m, BOB)
    failed = _finished(demo, demo.bot.store.get(m.id), Event.START, Event.FAIL)
    first, created = await service.rollback(failed.id, CAROL)
    assert created
    again, created = await service.rollback(failed.id, BOB)
    assert (again.id, created) == (first.id, False)
    with pytest.raises(Refused, match=f"open rollback, #{first.id}"):
        await service.resume(failed.id, ALICE)
    with pytest.raises(Refused, match="a rollback cannot be rolled back"):
        await service.rollback(first.id, CAROL)


async def test_restore_uses_no_unverified_backup_unless_an_approver_waives_it(
    demo: Harness,
) -> None:
    service, store = demo.bot.service, demo.bot.store
    m = await _run(demo, "data-anonymization", {"tenant": "2"}, State.SUCCEEDED)
    assert (
        demo.count(
            "staging",
            "SELECT COUNT(*) FROM Users WHERE TenantId = 2 AND Email LIKE '%@anonymized.com'",
        )
        > 0
    )

    # approved while the backup was verified; marked unverified before the start: not run
    r, _ = await service.rollback(m.id, CAROL)
    await service.approve(r.id, BOB, r.plan.hash)
    store.set_fields(m.id, harness.now(), backups=[{**m.backups[-1], "verified": False}])
    await demo.settle()
    voided = store.get(r.id)
    assert voided.state is State.CANCELLED
    assert "was not verified" in json.dumps([a.detail for a in store.audit_trail(r.id)])

    with pytest.raises(Refused, match='waive-unverified="<why>"'):
        await service.rollback(m.id, CAROL)
    with pytest.raises(Refused, match="only an approver of staging"):
        await service.rollback(m.id, ALICE, waiver="file checked by hand")
    waived = await _roll_back(demo, m, waiver="file checked by hand")

    assert waived.state is State.SUCCEEDED, waived.error
    assert waived.waiver == "file checked by hand"
    assert "NOT verified" in waived.plan.description
    anonymized = "SELECT COUNT(*) FROM Users WHERE Email LIKE '%@anonymized.com'"
    assert demo.count("staging", anonymized) == 0


async def test_the_restore_step_itself_refuses_an_unverified_backup(demo: Harness) -> None:
    """Even started without the scheduler's check of its plan, the restore does not put back
    a backup that is not verified (and says how to waive it)."""
    service, store = demo.bot.service, demo.bot.store
    m = await _run(demo, "data-anonymization", {"tenant": "2"}, State.SUCCEEDED)
    r, _ = await service.rollback(m.id, CAROL)
    await service.approve(r.id, BOB, r.plan.hash)
    store.set_fields(m.id, harness.now(), backups=[{**m.backups[-1], "verified": False}])
    service.engine.start(r.id)
    await service.wait_idle()
    failed = store.get(r.id)
    assert failed.state is State.FAILED
    assert "was not verified" in (failed.error or "") and "waive-unverified" in (failed.error or "")


async def test_an_after_rollback_check_that_fails_says_the_data_is_not_back(
    demo: Harness,
) -> None:
    m = await _run(demo, "tenant-consolidation", MOVE, State.SUCCEEDED)
    # someone moved a consolidated task on to tenant 5: the rollback does not find it
    engine = demo.bot.service.targets["staging"].target.engine
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE Tasks SET TenantId = 5 WHERE Id = (SELECT MIN(row_id)"
                " FROM barq_journal WHERE table_name = 'Tasks')"
            )
        )
    r = await _roll_back(demo, m)
    assert r.state is State.FAILED
    assert "journalled-rows-home" in (r.error or "") and "got 1" in (r.error or "")
    await demo.slack.wait_for(lambda s: _said(s, MIGRATIONS, "The data is NOT back"), timeout=10)


def _said(slack: Any, channel: str, words: str) -> bool:
    return any(words in harness.text_of(msg) for msg in slack.messages_in(channel))


# -- Slack --------------------------------------------------------------------------------------


async def test_rollback_from_slack_with_the_button_and_the_command(demo: Harness) -> None:
    m = await _run(demo, "tenant-consolidation", MOVE, State.SUCCEEDED)
    slack = demo.slack
    await slack.wait_for(lambda s: _button(s, m.id) is not None, timeout=10)

    reply = await demo.click(CAROL, _button(slack, m.id), "rollback")
    assert reply is not None and "waiting for approval" in harness.text_of(reply)
    (r,) = demo.bot.store.rollbacks_of(m.id)
    again = await demo.slash(ALICE, f"rollback {m.id}")
    assert f"has an open rollback: *#{r.id}*" in harness.text_of(again)

    await slack.wait_for(lambda s: _said(s, APPROVALS, f"ROLLBACK of #{m.id}"), timeout=10)
    approval = demo.approval_message(r.id)
    refused = await demo.click(CAROL, approval, "approve")
    assert refused is not None and "you requested this migration" in harness.text_of(refused)
    await demo.click(BOB, approval, "approve")
    await demo.settle()
    assert demo.bot.store.get(r.id).state is State.SUCCEEDED
    await slack.wait_for(lambda s: _said(s, MIGRATIONS, "The data is back"), timeout=10)
    await slack.wait_for(
        lambda s: _said(s, MIGRATIONS, f"The rollback of #{m.id}, #{r.id}, succeeded"), timeout=10
    )
    nothing = await demo.slash(ALICE, "rollback")
    assert "say which migration to roll back" in harness.text_of(nothing)
    assert "/migrate rollback 12" in harness.text_of(await demo.slash(ALICE, "help"))


def _button(slack: Any, migration_id: int) -> dict[str, Any] | None:
    """The final report of ``migration_id`` with its Roll back button."""
    for msg in slack.messages_in(MIGRATIONS):
        buttons = slack.find_buttons(msg)
        if any(
            b["action_id"] == "rollback" and b["value"].startswith(f"{migration_id}:")
            for b in buttons
        ):
            return msg
    return None
