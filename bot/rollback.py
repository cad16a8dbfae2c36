"""The rollback use case: ``/migrate rollback <id>`` plans the runbook's rollback of a
finished run and asks for approval, as a request does.

A rollback is a migration of its own (``rollback_of`` names its original), approved under its
target's policy (its requester cannot approve it), run by the engine, reported and audited
like any other. The pure rules are in bot/domain/rollback.py; this module reads and writes the
state store for them, on the Service's adapters (and its private helpers: this module is
the Service's rollback use case, kept apart so that service.py stays small).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.counts import plan_counts
from bot.domain import approval as policy_rules
from bot.domain import rollback as rules
from bot.domain.lifecycle import State
from bot.domain.records import Migration
from bot.errors import Refused, UsageError

if TYPE_CHECKING:
    from bot.service import Service

logger = logging.getLogger(__name__)


async def request(
    service: Service,
    migration_id: int,
    user: str,
    *,
    waiver: str | None = None,
    request_key: str | None = None,
) -> tuple[Migration, bool]:
    """Plan the rollback of migration ``migration_id``, record it and queue its approval
    request; return it and True. A resent request (same ``request_key``), or any request
    while a rollback of the same migration is open, returns that rollback and False.

    ``waiver`` lets the restore use a backup that was not verified; only an approver of the
    target may give it, with a reason."""
    original = await asyncio.to_thread(service.store.get, migration_id)
    if waiver is not None:
        waiver = waiver.strip()
        if len(waiver) < 3:
            raise UsageError(
                f'say why the unverified backup may be restored: {rules.WAIVE}="<why>",'
                f' e.g. /migrate rollback {migration_id} {rules.WAIVE}="file checked by hand"'
            )
        policy = service._policy(original)
        groups = await service.directory.groups_of(user, policy.approver_groups)
        if not policy_rules.may_approve(policy, user, groups):
            raise Refused(
                f"only an approver of {original.target} ({policy.describe()}) may waive the"
                f" verification of a backup; ask one to request the rollback with"
                f' {rules.WAIVE}="<why>"'
            )
    counts = await asyncio.to_thread(_counts, service, original, waiver)
    m, created = await asyncio.to_thread(
        _request, service, user, migration_id, waiver, request_key, counts
    )
    if created:
        logger.info("migration %s requested by %s: rollback of #%s", m.id, user, migration_id)
        service.on_change()
    return m, created


def _counts(service: Service, original: Migration, waiver: str | None) -> dict[str, int]:
    """The rollback's row counts (the rows of ``original``'s journal it moves back), taken
    before the request's transaction, which then decides as if they were not taken; none
    when the rollback would be refused."""
    if rules.refusal(original, service.store.rollbacks_of(original.id)) is not None:
        return {}
    entry = service._target(original.target)
    runbook = service._runbook(original.runbook)
    plan = rules.plan_for(runbook, original, entry.target.dialect.name, waiver)
    return plan_counts(plan, entry.target, original.run_key)


def _request(
    service: Service,
    user: str,
    migration_id: int,
    waiver: str | None,
    request_key: str | None,
    counts: dict[str, int],
) -> tuple[Migration, bool]:
    store = service.store
    with store.transaction():
        original = store.lock(migration_id)  # two rollback requests of one run: one at a time
        rollbacks = store.rollbacks_of(original.id)
        if (why := rules.refusal(original, rollbacks)) is not None:
            raise Refused(why)
        if (pending := rules.open_rollback(rollbacks)) is not None:
            return pending, False
        runbook = service._runbook(original.runbook)
        entry = service._target(original.target)
        plan = rules.plan_for(runbook, original, entry.target.dialect.name, waiver)
        plan = entry.target.show_command_fields(plan)
        earlier = store.earlier_request(plan, user, request_key)
        if earlier is not None:
            return earlier, False
        service._refuse_conflict(plan, sorted(rules.OPEN))
        now = service.clock()
        m, created = store.create(
            plan,
            counts,
            user,
            now,
            request_key=request_key,
            rollback_of=original.id,
            waiver=waiver,
        )
        if created:
            service.notifier.approval(m, [], service._policy(m))
            store.audit(original.id, user, "rollback-request", {"rollback": m.id}, now)
            service.notifier.notice(
                original,
                f"<@{user}> requested a rollback of #{original.id}: #{m.id}, waiting for"
                f" approval. Follow it with /migrate status {m.id}.",
                now,
            )
        return m, created


def request_in_transaction(
    service: Service, user: str, migration_id: int
) -> tuple[Migration, bool]:
    """Request the rollback of ``migration_id`` inside the caller's transaction (the bot's
    own rollback at a window's end, see bot/windows.py); raise Refused as a request would.
    It takes no row counts (nobody approves it; the start counts them)."""
    return _request(service, user, migration_id, None, None, {})


def current_hash(service: Service, m: Migration) -> str:
    """The hash the rollback ``m`` would get if requested now: it differs when the runbook,
    or the backup its restore would use, changed since. Raise Refused when it could not be
    requested now (its backup is no longer one it may restore, say)."""
    assert m.rollback_of is not None
    runbook = service.runbooks.get(m.runbook)
    if runbook is None:
        return "runbook-removed"
    original = service.store.get(m.rollback_of)
    dialect = service._target(m.target).target.dialect.name
    return rules.plan_for(runbook, original, dialect, m.waiver).hash


def why_not_resume(service: Service, migration_id: int) -> str | None:
    """Why a migration's own run may not resume because of its rollbacks, if it may not: one
    is open (it would undo what the resumed run does), or one succeeded (the change is undone;
    its runbook is requested again to make it)."""
    rollbacks = service.store.rollbacks_of(migration_id)
    if (pending := rules.open_rollback(rollbacks)) is not None:
        return (
            f"#{migration_id} has an open rollback, #{pending.id} ({pending.state.value}):"
            f" cancel it first (/migrate cancel {pending.id}) to resume #{migration_id}"
        )
    done = next((r for r in rollbacks if r.state is State.SUCCEEDED), None)
    if done is not None:
        return (
            f"#{migration_id} was rolled back by #{done.id}; request its runbook again to make"
            " the change"
        )
    return None
