"""The pure rules of rollbacks: which runs may be rolled back, which backup a restore uses, the
rollback's plan, and the runbook's after_rollback checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain import rollback as rules
from bot.domain.lifecycle import State
from bot.domain.plan import build_plan
from bot.domain.records import Migration
from bot.domain.runbook import Runbook
from bot.errors import Refused
from handlers.parse import parse

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _runbook(name: str) -> Runbook:
    return Runbook.model_validate(yaml.safe_load((ROOT / "runbooks" / f"{name}.yaml").read_text()))


def _migration(runbook: Runbook, params: dict[str, Any], **kw: Any) -> Migration:
    plan = build_plan(runbook, params, "staging", "sqlite")
    fields: dict[str, Any] = {
        "id": 7,
        "run_key": "barq-0123456789ab",
        "plan": plan,
        "counts": {},
        "state": State.SUCCEEDED,
        "requester": "U0ALICE",
        "requested_at": NOW,
        "updated_at": NOW,
        "started_at": NOW,
        "finished_at": NOW,
        "cancel_requested": False,
        "pause_requested": False,
        "current_step": 0,
        "error": None,
        "backups": [],
        **kw,
    }
    return Migration(**fields)


CONSOLIDATION = _runbook("tenant-consolidation")
MOVED = _migration(CONSOLIDATION, {"source_tenant": 2, "target_tenant": 4})


@pytest.mark.parametrize(
    ("state", "started", "says"),
    [
        (State.REQUESTED, False, "/migrate cancel 7"),
        (State.APPROVED, False, "has not run"),
        (State.RUNNING, True, "stop it first with /migrate cancel 7"),
        (State.PAUSED, True, "stop it first with /migrate cancel 7"),
        (State.CANCELLING, True, "stop it first"),
        (State.REJECTED, False, "there is nothing to roll back"),
        (State.CANCELLED, False, "before it started"),
    ],
)
def test_only_a_finished_run_that_started_may_be_rolled_back(
    state: State, started: bool, says: str
) -> None:
    m = replace(MOVED, state=state, started_at=NOW if started else None)
    assert says in (rules.refusal(m, []) or "")


@pytest.mark.parametrize("state", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
def test_a_finished_run_may_be_rolled_back(state: State) -> None:
    assert rules.refusal(replace(MOVED, state=state), []) is None


def test_a_rollback_is_not_rolled_back_and_a_run_is_rolled_back_once() -> None:
    undo = replace(MOVED, id=8, rollback_of=7)
    assert "a rollback cannot be rolled back" in (rules.refusal(undo, []) or "")
    assert "rolled back already by #8" in (rules.refusal(MOVED, [undo]) or "")
    pending = replace(undo, state=State.REQUESTED)
    assert rules.refusal(MOVED, [pending]) is None
    assert rules.open_rollback([replace(undo, state=State.FAILED), pending]) == pending


def test_the_rollback_plan_binds_the_originals_parameters_and_ends_with_its_checks() -> None:
    plan = rules.plan_for(CONSOLIDATION, MOVED, "sqlite")
    assert plan.params == MOVED.plan.params and plan.target == "staging"
    assert [s.name for s in plan.steps][-2:] == [
        "journalled-rows-home",
        "users-reference-tenants-after-rollback",
    ]
    assert [s.index for s in plan.steps] == [1, 2, 3, 4, 5]
    assert plan.rollback == () and plan.hash != MOVED.plan.hash
    assert "Rollback of #7" in plan.description
    other = replace(MOVED, id=9, run_key="barq-ffffffffffff")
    assert rules.plan_for(CONSOLIDATION, other, "sqlite").hash != plan.hash


def test_a_runbook_without_rollback_steps_is_refused() -> None:
    retention = _runbook("audit-log-retention")
    with pytest.raises(Refused, match="declares no rollback steps"):
        rules.plan_for(retention, _migration(retention, {"years": 2}), "sqlite")


def test_a_restore_uses_the_originals_latest_verified_backup_or_a_waived_one() -> None:
    old, new = {"location": "/b/1", "verified": True}, {"location": "/b/2", "verified": False}
    assert rules.pick_backup(7, [old, new], waived=False) == old
    assert rules.pick_backup(7, [old, new], waived=True) == old
    assert rules.pick_backup(7, [new], waived=True) == new
    with pytest.raises(Refused, match='waive-unverified="<why>"'):
        rules.pick_backup(7, [new], waived=False)
    with pytest.raises(Refused, match="#7 took no backup"):
        rules.pick_backup(7, [], waived=True)
    anonymized = _runbook("data-anonymization")
    run = _migration(anonymized, {"tenant": 2}, backups=[new])
    with pytest.raises(Refused, match="was not verified"):
        rules.plan_for(anonymized, run, "sqlite")
    waived = rules.plan_for(anonymized, run, "sqlite", "checked by hand")
    assert "NOT verified" in waived.description


def test_after_rollback_holds_checks_only_and_leaves_old_digests_alone() -> None:
    raw = yaml.safe_load((ROOT / "runbooks" / "data-anonymization.yaml").read_text())
    without = {k: v for k, v in raw.items() if k != "after_rollback"}
    assert (
        Runbook.model_validate(without).digest
        == Runbook.model_validate({**without, "after_rollback": []}).digest
    )
    bad = {**raw, "after_rollback": [{"name": "again", "kind": "restore"}]}
    with pytest.raises(ValueError, match="only check steps may follow a rollback"):
        Runbook.model_validate(bad)
    clash = {**raw, "after_rollback": [{**raw["after_rollback"][0], "name": "restore-backup"}]}
    with pytest.raises(ValueError, match="step names must be unique"):
        Runbook.model_validate(clash)


def test_rollback_is_parsed_with_its_waiver() -> None:
    assert parse("rollback #12").migration_id == 12
    cmd = parse('rollback 12 waive-unverified="file checked by hand"')
    assert (cmd.name, cmd.migration_id, cmd.waiver) == ("rollback", 12, "file checked by hand")
    with pytest.raises(ValueError, match="say which migration to roll back"):
        parse("rollback")
    with pytest.raises(ValueError, match="is not an option of rollback"):
        parse("rollback 12 now")
