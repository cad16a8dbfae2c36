"""Rollbacks (pure): whether a run may be rolled back, which backup a restore puts back, and
the plan of a rollback.

A rollback is a migration of its own, linked to the one it undoes (its original). Its steps
are the runbook's ``rollback`` steps, then its ``after_rollback`` checks, bound to the
original's parameters; ``:migration_id`` in them is the original's (so a rollback finds the
rows the original journalled). A restore step puts back the original's own latest verified
backup, never one of another run, and an unverified one only under an approver's waiver.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bot.domain.lifecycle import State, in_state, state_phrase
from bot.domain.plan import Plan, PlannedStep
from bot.domain.records import Migration
from bot.domain.runbook import Runbook
from bot.domain.steps import AnyStep
from bot.errors import ParameterError, Refused

# the states of a rollback that is still open: a second request points to it
OPEN = frozenset({State.REQUESTED, State.APPROVED, State.RUNNING, State.CANCELLING, State.PAUSED})
_NOT_STARTED = frozenset({State.REQUESTED, State.APPROVED})
_STOPPING = frozenset({State.RUNNING, State.CANCELLING, State.PAUSED})
WAIVE = "waive-unverified"  # the /migrate rollback option that waives an unverified backup


def refusal(original: Migration, rollbacks: list[Migration]) -> str | None:
    """Why ``original`` may not be rolled back now (a sentence that says what to do
    instead), or None when it may. ``rollbacks`` are its rollbacks so far; an open one is
    not a refusal (the request points to it, see :func:`open_rollback`)."""
    oid = original.id
    if original.rollback_of is not None:
        return (
            f"#{oid} is itself the rollback of #{original.rollback_of}; a rollback cannot be"
            f" rolled back. To make that change again, request its runbook again"
            f" (/migrate request {original.runbook} {original.plan.args()}"
            f" on={original.target})"
        )
    if original.state in _NOT_STARTED:
        return (
            f"{in_state(oid, original.state)} and has not run, so there is nothing to roll"
            f" back: stop it with /migrate cancel {oid}"
        )
    if original.state in _STOPPING:
        return (
            f"{in_state(oid, original.state)}: stop it first with /migrate cancel {oid},"
            f" then roll it back once it has stopped"
        )
    if original.started_at is None:
        return f"{in_state(oid, original.state)} before it started: there is nothing to roll back"
    done = next((r for r in rollbacks if r.state is State.SUCCEEDED), None)
    if done is not None:
        return f"#{oid} was rolled back already by #{done.id} (/migrate status {done.id})"
    return None


def open_rollback(rollbacks: list[Migration]) -> Migration | None:
    """The rollback of a migration that is still open (requested, approved, running or
    paused), if there is one: only one may be open at a time."""
    return next((r for r in rollbacks if r.state in OPEN), None)


def restores(runbook: Runbook) -> bool:
    """Whether the runbook's rollback puts a backup back."""
    return any(step.kind == "restore" for step in runbook.rollback)


def pick_backup(original_id: int, backups: list[dict[str, Any]], *, waived: bool) -> dict[str, Any]:
    """The backup a restore of migration ``original_id`` puts back: its latest verified
    backup, or, when an approver ``waived`` verification, its latest one. Raise Refused
    saying why there is none and what to do."""
    if not backups:
        raise Refused(
            f"#{original_id} took no backup (its run stopped before its backup step, or the"
            " runbook has none), so its rollback, a restore, has nothing to restore: only a"
            " backup of that run may be restored, never an older one"
        )
    verified = [b for b in backups if b.get("verified")]
    if verified:
        return verified[-1]
    if waived:
        return backups[-1]
    raise Refused(
        f"the backup #{original_id} took ({backups[-1].get('location')}) was not verified, so"
        f" its rollback does not restore it. If restoring it anyway is right, an approver of"
        f' the target may request the rollback with {WAIVE}="<why>" (e.g. /migrate rollback'
        f' {original_id} {WAIVE}="file checked by hand"); the reason is shown to the approvers'
        f" and kept in the audit trail"
    )


def describe_backup(original_id: int, backup: dict[str, Any]) -> str:
    """One line on the backup a rollback restores."""
    checked = "verified" if backup.get("verified") else "NOT verified"
    taken = str(backup.get("created_at") or "")[:19].replace("T", " ")
    return (
        f"restores the backup #{original_id} took"
        + (f" at {taken} UTC" if taken else "")
        + f" ({backup.get('location')}, {checked})"
    )


def rollback_plan(
    runbook: Runbook,
    original: Migration,
    dialect: str,
    *,
    backup: dict[str, Any] | None = None,
    waiver: str | None = None,
) -> Plan:
    """The plan of the rollback of ``original``: the runbook's rollback steps, then its
    after-rollback checks, bound to the original's parameters, on the original's target.

    The hash covers the runbook, the original (id and run key), the target, the parameters,
    the backup a restore puts back and the waiver, so an approval binds all of them."""
    if not runbook.rollback:
        raise _no_rollback(runbook, original)
    params = dict(original.plan.params)
    steps = [_resolve(i, s, dialect, params) for i, s in enumerate(runbook.rollback, 1)]
    first = len(steps) + 1
    checks = [_resolve(i, s, dialect, params) for i, s in enumerate(runbook.after_rollback, first)]
    material = json.dumps(
        [
            "rollback",
            runbook.digest,
            original.id,
            original.run_key,
            original.target,
            dialect,
            sorted(params.items()),
            (backup or {}).get("location"),
            waiver,
        ],
        sort_keys=True,
        default=str,
    )
    what = f"Rollback of #{original.id} ({original.state.value}): {runbook.description}"
    if backup is not None:
        what += f" It {describe_backup(original.id, backup)}."
    if runbook.digest != original.plan.runbook_digest:
        what += f" The runbook changed since #{original.id} was planned: review these steps."
    return Plan(
        runbook=runbook.name,
        description=what,
        runbook_digest=runbook.digest,
        target=original.target,
        dialect=dialect,
        params=params,
        steps=(*steps, *checks),
        rollback=(),
        hash=hashlib.sha256(material.encode()).hexdigest(),
    )


def _resolve(index: int, step: AnyStep, dialect: str, params: dict[str, Any]) -> PlannedStep:
    try:  # its counts bind the original's key too (the service counts them so)
        return step.planned(index, dialect, params)
    except KeyError as exc:
        raise ParameterError(
            f"rollback step {step.name!r} cannot run on this target: {exc.args[0]}"
        ) from exc


def _no_rollback(runbook: Runbook, original: Migration) -> Refused:
    return Refused(
        f"{runbook.name} declares no rollback steps, so #{original.id} cannot be rolled back by"
        " the bot: undo it by hand as the team's runbook says (Rollback Procedures), or add"
        " rollback steps to the runbook"
    )


def backup_for(runbook: Runbook, original: Migration, waiver: str | None) -> dict[str, Any] | None:
    """The backup of ``original`` its rollback restores (None when the rollback restores
    none); raise Refused when it must restore one and none may be used."""
    if not restores(runbook):
        return None
    return pick_backup(original.id, original.backups, waived=bool(waiver))


def plan_for(
    runbook: Runbook, original: Migration, dialect: str, waiver: str | None = None
) -> Plan:
    """The rollback plan of ``original`` as its runbook says now (see :func:`rollback_plan`);
    raise Refused when the runbook has no rollback or its restore has no backup to use."""
    if not runbook.rollback:  # refused before the backup is looked for
        raise _no_rollback(runbook, original)
    backup = backup_for(runbook, original, waiver)
    return rollback_plan(runbook, original, dialect, backup=backup, waiver=waiver)


def verdict(m: Migration) -> str:
    """Whether a finished rollback brought the data back, in one sentence for its report."""
    if m.state is State.SUCCEEDED:
        return (
            f"The data is back: every rollback step of #{m.rollback_of} committed and every"
            " after-rollback check passed."
        )
    why = f": {m.error}" if m.error else ""
    if m.state is State.CANCELLED:
        return f"The data is NOT back: the rollback was cancelled before it finished{why}."
    return (
        f"The data is NOT back{why}. Fix the cause, then /migrate resume {m.id} (its committed"
        " steps are not run again)."
    )


def finished_notice(m: Migration) -> str:
    """What the thread of the original says when its rollback ``m`` has finished."""
    return f"The rollback of #{m.rollback_of}, #{m.id}, {state_phrase(m.state)}. {verdict(m)}"
