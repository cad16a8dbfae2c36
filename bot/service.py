"""Use cases: plan, request, approve, reject, cancel, status, and run_due(now).

Public methods are coroutines; their database work runs in threads so the event loop (and
Slack's 3-second acks) never waits on a driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import rollback as rollbacks
from bot import windows
from bot.counts import plan_counts
from bot.domain import approval as policy_rules
from bot.domain.conflicts import conflict
from bot.domain.drift import count_drift, drift_notice
from bot.domain.lifecycle import ACTIVE, Event, State, in_state
from bot.domain.mrkdwn import escape
from bot.domain.plan import Plan, build_plan, coerce_params
from bot.domain.ports import Clock, Directory, Notifier, Runbooks, Store, Target
from bot.domain.records import AuditEntry, Migration, StepRun
from bot.domain.runbook import Runbook
from bot.domain.sqltext import sql_for
from bot.engine import Engine
from bot.errors import (
    BarqError,
    ConfigError,
    Conflict,
    ParameterError,
    QueryFailed,
    Refused,
    StateUnavailable,
    TargetUnavailable,
    UnknownRunbook,
    UnknownTarget,
)
from bot.settings import TargetConfig

logger = logging.getLogger(__name__)
# audit actions that the approval message and the thread attribute to the person who took them
_DECISIONS = ("reject", "cancel", "pause-request", "resume")

_PENDING = frozenset({State.REQUESTED, State.APPROVED})
_STARTED = frozenset({*ACTIVE, State.PAUSED})  # a run that has changed data and may go on
_BUSY = (*sorted(_PENDING), *sorted(_STARTED))


@dataclass(frozen=True)
class TargetEntry:
    """A target database and its configuration (approval policy, production flag)."""

    target: Target
    config: TargetConfig


class Service:
    """The bot's use cases, independent of Slack."""

    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        directory: Directory,
        runbooks: Runbooks,
        targets: dict[str, TargetEntry],
        clock: Clock,
        on_change: Callable[[], None] = lambda: None,
        engine: Engine,
        wake: Callable[..., None] = lambda at=None: None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.directory = directory
        self.runbooks = runbooks
        self.targets = targets
        self.clock = clock
        self.on_change = on_change
        self.wake = wake  # asks the scheduler for a pass of run_due now (or at ``at``)
        self._skipped: dict[int, str] = {}  # migration id -> why the last pass skipped it
        self.engine = engine

    # -- reading ----------------------------------------------------------------------------

    async def runbook_list(self) -> list[Runbook]:
        """The installed runbooks, by name (read in a thread: it may reload their files)."""
        return await asyncio.to_thread(self.runbooks.all)

    async def status(self, migration_id: int) -> tuple[Migration, list[StepRun]]:
        """One migration and its step runs."""
        m = await asyncio.to_thread(self.store.get, migration_id)
        return m, await asyncio.to_thread(self.store.step_runs, migration_id)

    async def history(self, migration_id: int) -> list[AuditEntry]:
        """Who did what to one migration, and when: its audit trail, oldest first."""
        return await asyncio.to_thread(self.store.audit_trail, migration_id)

    async def recent(self, limit: int = 10, offset: int = 0) -> list[Migration]:
        """The latest migrations, newest first, after skipping the ``offset`` newest."""
        return await asyncio.to_thread(self.store.recent, limit, offset)

    # -- planning ---------------------------------------------------------------------------

    async def plan(
        self, runbook: str, raw: dict[str, str], target: str
    ) -> tuple[Plan, dict[str, int]]:
        """A dry run: the resolved plan and the rows each step touches now. Changes nothing."""
        return await asyncio.to_thread(self._plan, runbook, raw, target)

    def _plan(
        self, name: str, raw: dict[str, str], target_name: str
    ) -> tuple[Plan, dict[str, int]]:
        runbook = self._runbook(name)
        entry = self._target(target_name)
        if not runbook.allows_target(target_name):
            raise UnknownTarget(
                f"{runbook.name} may not run on {target_name!r}; it may run on "
                f"{', '.join(runbook.targets)}"
            )
        params = coerce_params(runbook, raw)
        plan = build_plan(runbook, params, target_name, entry.target.dialect.name)
        plan = entry.target.show_command_fields(plan)
        self._check_exists(runbook, params, entry.target)
        self._check_preconditions(runbook, params, entry.target)
        return plan, plan_counts(plan, entry.target)

    def _check_exists(self, runbook: Runbook, params: dict[str, Any], target: Target) -> None:
        for name, param in runbook.parameters.items():
            if param.exists is None:
                continue
            sql = sql_for(param.exists, target.dialect.name)
            try:
                found = target.scalar(sql, {"value": params[name]})
            except QueryFailed as exc:
                raise exc.naming(f"the exists check of parameter {name!r}") from exc
            if found is None:
                raise ParameterError(
                    f"{name}={params[name]}: {param.exists_message} on {target.name}"
                )

    def _check_preconditions(
        self, runbook: Runbook, params: dict[str, Any], target: Target
    ) -> None:
        """Refuse the plan, with every failing precondition's message, when the target's data
        is not what the runbook needs (found now rather than as a failure mid-run)."""
        failed, bound = [], {**params, "migration_id": "dry-run"}
        for pre in runbook.preconditions:
            try:
                value = target.scalar(sql_for(pre.sql, target.dialect.name), bound)
            except QueryFailed as exc:
                raise exc.naming(f"the precondition {pre.name!r}") from exc
            if (why := pre.refusal(value, params)) is not None:
                failed.append(why)
        if failed:
            raise Refused(f"{runbook.name} cannot be planned on {target.name}: {'; '.join(failed)}")

    def _runbook(self, name: str) -> Runbook:
        if (problem := self.runbooks.problem(name)) is not None:
            raise problem
        if (runbook := self.runbooks.get(name)) is None:
            known = ", ".join(r.name for r in self.runbooks.all()) or "none"
            raise UnknownRunbook(f"there is no runbook {name!r}; runbooks: {known} (/migrate list)")
        return runbook

    def _target(self, name: str) -> TargetEntry:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none configured"
            raise UnknownTarget(f"there is no target {name!r}; targets: {known}")
        return self.targets[name]

    # -- requesting and deciding -------------------------------------------------------------

    async def request(
        self,
        user: str,
        runbook: str,
        raw: dict[str, str],
        target: str,
        *,
        request_key: str | None = None,
        when: str | None = None,
    ) -> tuple[Migration, bool]:
        """Plan, record the request, and queue the approval message; return the migration
        and True. On a target with downtime windows ``when`` (next, now or a local time)
        says which window it runs in once approved (see bot/windows.py). A resent request
        (same ``request_key``, Slack's trigger_id), or the same plan requested again by the
        same user while it is pending, returns the migration it made and False, and records
        nothing new."""
        when = windows.parse_when(when, self._target(target).config.windows, target)
        plan, counts = await self.plan(runbook, raw, target)
        m, created = await asyncio.to_thread(self._request, user, plan, counts, request_key, when)
        if created:
            logger.info("migration %s requested by %s: %s on %s", m.id, user, runbook, target)
            self.on_change()
        return m, created

    def _request(
        self,
        user: str,
        plan: Plan,
        counts: dict[str, int],
        request_key: str | None,
        when: str | None = None,
    ) -> tuple[Migration, bool]:
        with self.store.transaction():
            earlier = self.store.earlier_request(plan, user, request_key)
            if earlier is not None:  # the same request made again: answered with the first
                return earlier, False
            self._refuse_conflict(plan, _BUSY)
            m, created = self.store.create(
                plan, counts, user, self.clock(), request_key=request_key
            )
            if created:
                m = windows.on_request(self, m, when, self.clock())
                self.notifier.approval(m, [], self._policy(m))
            return m, created

    async def rollback(
        self,
        migration_id: int,
        user: str,
        *,
        waiver: str | None = None,
        request_key: str | None = None,
    ) -> tuple[Migration, bool]:
        """Request the rollback of a finished run, as a migration of its own that waits for
        approval; return it and True, or the rollback already open (or resent) and False.
        See bot/rollback.py."""
        return await rollbacks.request(
            self, migration_id, user, waiver=waiver, request_key=request_key
        )

    def _conflict(self, plan: Plan, others: list[Migration]) -> tuple[Migration, str] | None:
        """The first of ``others`` that ``plan`` must not run beside, and why."""
        runbook = self.runbooks.get(plan.runbook)
        conflicts_on = runbook.conflicts_on if runbook is not None else None
        for other in others:
            if (why := conflict(plan, other.plan, conflicts_on)) is not None:
                return other, why
        return None

    def _refuse_conflict(self, plan: Plan, states: Iterable[State]) -> None:
        """Raise Conflict, saying with which migration and what to do, if ``plan`` must not
        run beside a migration in one of ``states`` (unless its runbook queues instead)."""
        if self._runbook(plan.runbook).on_conflict == "queue":
            return
        clash = self._conflict(plan, self.store.in_states(*states))
        if clash is not None:
            other, why = clash
            raise Conflict(
                f"#{other.id} ({other.runbook}, {other.plan.args()}) is {other.state.value}"
                f" on {plan.target} and {why}: wait until it has finished, or cancel it"
                f" (/migrate cancel {other.id})"
            )

    def _policy(self, m: Migration) -> policy_rules.ApprovalPolicy:
        """The target's approval policy; its emergency one for a run outside its windows."""
        return windows.policy_for(self, m) or self._target(m.target).config.approval

    async def approve(self, migration_id: int, user: str, plan_hash: str) -> Migration:
        """Count ``user``'s approval of the plan ``plan_hash``; raise Refused if it cannot."""
        m = await asyncio.to_thread(self.store.get, migration_id)
        policy = self._policy(m)
        groups = await self.directory.groups_of(user, policy.approver_groups)
        m = await asyncio.to_thread(self._approve, migration_id, user, groups, plan_hash)
        self.on_change()
        if m.state is State.APPROVED:
            logger.info("migration %s fully approved", m.id)
            self.wake()  # run_due decides when it starts
        return m

    def _approve(self, migration_id: int, user: str, groups: set[str], clicked: str) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)  # decisions on one migration run one at a time
            if m.state is not State.REQUESTED:
                raise Refused(policy_rules.no_longer(m.id, m.state, "approve"))
            policy = self._policy(m)
            now = self.clock()
            if clicked != m.plan.hash:
                raise Refused(
                    f"that button was for plan {clicked[:10]}, but #{m.id} is plan "
                    f"{m.plan.short_hash}: nothing was approved"
                )
            verdict = policy_rules.decide(
                policy,
                requester=m.requester,
                user=user,
                user_groups=groups,
                prior=self.store.prior_approvals(m.id),
                requested_hash=m.plan.hash,
                current_hash=self._current_hash(m),
                requested_at=m.requested_at,
                now=now,
            )
            event = Event.APPROVE if verdict.complete else None
            m = self.store.record_decision(
                m.id, user=user, decision="approve", plan_hash=m.plan.hash, now=now, event=event
            )
            prior = policy_rules.valid_approvals(
                policy, self.store.prior_approvals(m.id), m.plan.hash, now
            )
            self.notifier.approval(m, prior, policy)
            if m.state is State.APPROVED:
                m = windows.on_approved(self, m, now)
            return m

    async def approvals_of(
        self, m: Migration
    ) -> tuple[list[policy_rules.PriorApproval], policy_rules.ApprovalPolicy]:
        """The approvals of ``m`` that count now, and its target's approval policy."""
        policy = self._policy(m)
        prior = await asyncio.to_thread(self.store.prior_approvals, m.id)
        return policy_rules.valid_approvals(policy, prior, m.plan.hash, self.clock()), policy

    def _current_hash(self, m: Migration) -> str:
        """The hash the same request would get now: differs if the runbook changed."""
        if m.rollback_of is not None:
            return rollbacks.current_hash(self, m)
        runbook = self.runbooks.get(m.runbook)
        if runbook is None:
            return "runbook-removed"
        entry = self._target(m.target)
        return build_plan(runbook, dict(m.plan.params), m.target, entry.target.dialect.name).hash

    async def reject(self, migration_id: int, user: str, reason: str) -> Migration:
        """Reject the request with a reason; approvers (or the requester) only."""
        m = await asyncio.to_thread(self.store.get, migration_id)
        policy = self._policy(m)
        groups = await self.directory.groups_of(user, policy.approver_groups)
        if not policy_rules.may_reject(
            policy, requester=m.requester, user=user, user_groups=groups
        ):
            raise Refused(f"only approvers may reject; approvers: {policy.describe()}")
        m = await asyncio.to_thread(self._reject, migration_id, user, reason)
        self.on_change()
        return m

    async def authorize_reject(self, migration_id: int, user: str) -> None:
        """Raise Refused unless ``user`` may reject the migration now."""
        m = await asyncio.to_thread(self.store.get, migration_id)
        if m.state is not State.REQUESTED:
            raise Refused(policy_rules.no_longer(m.id, m.state, "reject"))
        policy = self._policy(m)
        groups = await self.directory.groups_of(user, policy.approver_groups)
        if not policy_rules.may_reject(
            policy, requester=m.requester, user=user, user_groups=groups
        ):
            raise Refused(f"only approvers may reject; approvers: {policy.describe()}")

    def _reject(self, migration_id: int, user: str, reason: str) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)
            if m.state is not State.REQUESTED:
                raise Refused(policy_rules.no_longer(m.id, m.state, "reject"))
            m = self.store.record_decision(
                m.id,
                user=user,
                decision="reject",
                plan_hash=m.plan.hash,
                now=self.clock(),
                reason=reason,
                event=Event.REJECT,
            )
            said = f"“{escape(reason)}”. Request it again once that is addressed."
            self._announce(m, user, f"#{m.id} was rejected by <@{user}>: {said}")
            return m

    def _announce(self, m: Migration, user: str, text: str) -> None:
        """Show who decided or controlled ``m`` on its approval message (with the reason
        given) and say ``text`` in its thread, to its requester if someone else acted."""
        trail = self.store.audit_trail(m.id)
        decided = next((a for a in reversed(trail) if a.action in _DECISIONS), None)
        approvals = [p for p in self.store.prior_approvals(m.id) if p.plan_hash == m.plan.hash]
        self.notifier.approval(m, approvals, self._policy(m), decided)
        to = "" if user == m.requester else f"<@{m.requester}> "
        self.notifier.notice(m, to + text, m.updated_at)

    async def cancel(self, migration_id: int, user: str) -> Migration:
        """Cancel before the run, or stop a running one at the next batch or step boundary.

        The requester and the target's approvers may cancel."""
        await self._authorize_control(migration_id, user, "cancel")
        m = await asyncio.to_thread(self._cancel, migration_id, user)
        self.on_change()
        return m

    def _cancel(self, migration_id: int, user: str) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)
            now = self.clock()
            if m.state in ACTIVE:
                m = self.store.transition(
                    m.id, Event.CANCEL, actor=user, now=now, cancel_requested=True
                )
                self.engine.signal(m.id, cancel=True)
                self.notifier.progress(m, self.store.step_runs(m.id), now, None)
                self._announce(
                    m,
                    user,
                    f"#{m.id}: cancel requested by <@{user}>; it stops at the next batch or"
                    " step boundary.",
                )
                return m
            if m.state is State.PAUSED:
                m = self.store.transition(m.id, Event.CANCEL, actor=user, now=now, finished_at=now)
                runs = self.store.step_runs(m.id)
                self.notifier.progress(m, runs, now, None)
                self.notifier.outcome(m, runs, now)
                self.engine.pager.resolve(m, f"#{m.id} was cancelled by {user} while paused", now)
                self._announce(m, user, f"#{m.id} was cancelled by <@{user}> while paused.")
                return m
            if m.state not in (State.REQUESTED, State.APPROVED):
                raise Refused(f"{in_state(m.id, m.state)}; there is nothing to cancel")
            m = self.store.transition(m.id, Event.CANCEL, actor=user, now=now, finished_at=now)
            self._announce(m, user, f"#{m.id} was cancelled by <@{user}>; it will not run.")
            return m

    async def pause(self, migration_id: int, user: str) -> Migration:
        """Pause a running migration at its next batch or step boundary."""
        await self._authorize_control(migration_id, user, "pause")
        m = await asyncio.to_thread(self._pause, migration_id, user)
        self.on_change()
        return m

    def _pause(self, migration_id: int, user: str) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)
            if m.state is not State.RUNNING:
                raise Refused(f"{in_state(m.id, m.state)}; only a running migration pauses")
            now = self.clock()
            m = self.store.set_fields(m.id, now, pause_requested=True)
            self.store.audit(m.id, user, "pause-request", {}, now)
            self.engine.signal(m.id, pause=True)
            self.notifier.progress(m, self.store.step_runs(m.id), now, None)
            self._announce(
                m,
                user,
                f"#{m.id}: pause requested by <@{user}>; it pauses at the next batch or step"
                " boundary.",
            )
            return m

    async def resume(self, migration_id: int, user: str) -> Migration:
        """Continue a paused run, or a failed one whose cause was fixed, from its checkpoints.

        Steps and batches already committed are not run again."""
        await self._authorize_control(migration_id, user, "resume")
        m = await asyncio.to_thread(self._resume, migration_id, user)
        self.engine.resume(m.id)
        self.on_change()
        return m

    def _resume(self, migration_id: int, user: str) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)
            if m.state not in (State.PAUSED, State.FAILED):
                raise Refused(f"{in_state(m.id, m.state)}; only a paused or failed run resumes")
            if (why := rollbacks.why_not_resume(self, m.id)) is not None:
                raise Refused(why)
            if (why := windows.why_not_resume(self, m, self.clock())) is not None:
                raise Refused(why)
            m = self.store.transition(
                m.id, Event.RESUME, actor=user, now=self.clock(), error=None, finished_at=None
            )
            self._announce(m, user, f"#{m.id} was resumed by <@{user}> from its last checkpoint.")
            return m

    async def throttle(self, migration_id: int, user: str, level: float | None) -> Migration:
        """Slow a running or paused migration by hand to ``1 - level`` of its speed (smaller
        batches, a wait between them), or lift the manual throttle (``level`` None). The level
        is the run's record (``manual_throttle``), so it holds across pauses, resumes and
        restarts of the bot until it is lifted. The requester and the target's approvers may;
        it is audited and said in the run's thread."""
        await self._authorize_control(migration_id, user, "throttle")
        m = await asyncio.to_thread(self._throttle, migration_id, user, level)
        # after the commit, on the event loop: a run that starts or resumes meanwhile reads
        # the new record, or is told here (and then ignores the older record it read)
        self.engine.throttle(m.id, level)
        self.on_change()
        return m

    def _throttle(self, migration_id: int, user: str, level: float | None) -> Migration:
        with self.store.transaction():
            m = self.store.lock(migration_id)
            if m.state not in (State.RUNNING, State.PAUSED):
                raise Refused(
                    f"{in_state(m.id, m.state)}; only a running or paused migration is throttled"
                )
            now = self.clock()
            m = self.store.set_fields(m.id, now, manual_throttle=level)
            percent = None if level is None else round(level * 100)
            self.store.audit(m.id, user, "throttle", {"percent": percent}, now)
            said = (
                "lifted the manual throttle"
                if percent is None
                else f"throttled it by {percent}% (smaller batches, a wait between them)"
                + ("" if m.state is State.RUNNING else "; it holds when the run resumes")
            )
            self.notifier.notice(m, f"#{m.id}: <@{user}> {said}.", now)
            self.notifier.progress(m, self.store.step_runs(m.id), now, self.engine.live(m.id))
            return m

    async def _authorize_control(self, migration_id: int, user: str, verb: str) -> None:
        m = await asyncio.to_thread(self.store.get, migration_id)
        policy = self._policy(m)
        groups = await self.directory.groups_of(user, policy.approver_groups)
        if user != m.requester and not policy_rules.may_approve(policy, user, groups):
            raise Refused(
                f"only the requester (<@{m.requester}>) or an approver may {verb} #{m.id}"
            )

    # -- the scheduler's one entry point -------------------------------------------------------

    async def run_due(self, now: datetime) -> None:
        """One pass of everything due at ``now``: expire stale requests, start approved runs,
        and resume runs a restart interrupted.

        Each migration is handled on its own: one that cannot be handled is logged, recorded
        in its audit trail and thread (once per reason), and skipped; the pass goes on."""
        states = (State.REQUESTED, State.APPROVED, State.PAUSED, *sorted(ACTIVE))
        try:
            due = await asyncio.to_thread(self.store.in_states, *states)
        except StateUnavailable:  # the store logs the outage; the next pass tries again
            return
        # forget why migrations that are no longer due were skipped (cancelled, say)
        ids = {m.id for m in due}
        self._skipped = {i: why for i, why in self._skipped.items() if i in ids}
        for m in due:
            try:
                await self._due(m, now)
            except StateUnavailable:
                return
            except Exception as exc:
                await self._skip(m, exc, now)
            else:
                self._skipped.pop(m.id, None)
        try:
            at = await asyncio.to_thread(windows.next_wake, self, now, due)
        except StateUnavailable:
            return
        if at is not None:
            self.wake(at)  # a window opens, a reminder is due, or a window ends

    async def _due(self, m: Migration, now: datetime) -> None:
        entry = self.targets.get(m.target)
        if entry is None:
            raise ConfigError(
                f"target {m.target} is no longer configured; add it back to the configuration"
                " to run or cancel this migration"
            )
        if m.state in (State.REQUESTED, State.APPROVED):
            policy = entry.config.approval
            scheduled = m.state is State.APPROVED and entry.config.windows is not None
            if now >= policy_rules.expires_at(policy, m.requested_at) and not scheduled:
                await asyncio.to_thread(self._expire, m, policy)
            elif m.state is State.APPROVED and not self.engine.is_running(m.id):
                if not await asyncio.to_thread(windows.gate, self, m, now):
                    return  # its window has not opened, or it waits its turn (bot/windows.py)
                if (changed := await asyncio.to_thread(self._plan_change, m)) is not None:
                    await asyncio.to_thread(self._void, m, changed, now)
                    self.on_change()
                elif (clash := await asyncio.to_thread(self._running_conflict, m)) is not None:
                    other, why = clash
                    raise Conflict(f"it starts once #{other.id} has finished ({why})")
                elif await asyncio.to_thread(self._recount, m, entry, now):
                    self.engine.start(m.id)
                else:
                    self.on_change()
        elif m.state is State.PAUSED:
            if await asyncio.to_thread(windows.paused, self, m, now):
                self.engine.resume(m.id)
                self.on_change()
        elif self.engine.is_running(m.id):
            await asyncio.to_thread(windows.guard, self, m, now)
        elif windows.outside_window(self, m, now):
            await asyncio.to_thread(windows.pause_after_restart, self, m, now)
            self.on_change()
        elif (await asyncio.to_thread(self.store.get, m.id)).state in ACTIVE:
            # read again: a run of this process may have ended since the pass began
            logger.info("migration %s: resuming after a restart", m.id)
            self.engine.resume(m.id, restarted=True)

    def _running_conflict(self, m: Migration) -> tuple[Migration, str] | None:
        """A migration running (or paused) on the target of ``m`` that it must wait for."""
        running = [
            o
            for o in self.store.in_states(*_BUSY, target=m.target)  # others never conflict
            if o.id != m.id and (o.state in _STARTED or self.engine.is_running(o.id))
        ]
        return self._conflict(m.plan, running)

    def _plan_change(self, m: Migration) -> str | None:
        """Why the approved plan of ``m`` is no longer what its runbook says now, if it is not."""
        if self.runbooks.get(m.runbook) is None:
            return f"its runbook {m.runbook} was removed"
        try:
            if self._current_hash(m) == m.plan.hash:
                return None
        except BarqError as exc:
            return f"its runbook {m.runbook} no longer plans it ({exc})"
        return f"its runbook {m.runbook} changed since plan {m.plan.short_hash} was requested"

    def _void(self, m: Migration, why: str, now: datetime) -> None:
        """Cancel an approved run whose plan is stale, before it starts; say so in its thread.

        Cancelled rather than left approved and skipped: its approvers reviewed a plan the
        runbook no longer describes, and a run left waiting would start whenever the file
        happened to match again, long after anyone expected it."""
        with self.store.transaction():
            if self.store.get(m.id).state is not State.APPROVED:
                return  # decided otherwise meanwhile
            detail = {"reason": why}
            m = self.store.transition(
                m.id, Event.CANCEL, actor="bot", now=now, finished_at=now, detail=detail
            )
            self.notifier.approval(m, [], self._policy(m))
            text = f"#{m.id} was not started and is cancelled: {why}. Request it again to run"
            self.notifier.notice(m, f"{text} the runbook as it is now.", now)
        logger.warning("migration %s cancelled before its start: %s", m.id, why)

    def _recount(self, m: Migration, entry: TargetEntry, now: datetime) -> bool:
        """Take the plan's counts again just before the start, and audit them; return whether
        the run may start. A count that moved by more than the target's threshold since the
        request is said in the thread; on a production target the run goes back to waiting
        for approval (with the new counts), and the approvals given for the old counts are
        voided (the audit trail keeps them)."""
        if not any(s.count_sql for s in m.plan.steps):
            return True
        key = None if m.rollback_of is None else self.store.get(m.rollback_of).run_key
        try:
            counts = plan_counts(m.plan, entry.target, key)
        except QueryFailed as exc:  # not started: the next pass counts again
            raise TargetUnavailable(
                f"its rows could not be counted again on {m.target} before the start: {exc.message}"
            ) from exc
        percent = entry.config.count_drift_percent
        drifts = count_drift(m.counts, counts, percent)
        held = bool(drifts) and entry.config.production
        detail = {"before": m.counts, "after": counts, "drift_percent": percent, "held": held}
        with self.store.transaction():
            if self.store.get(m.id).state is not State.APPROVED:
                return False  # decided otherwise meanwhile
            if held:
                detail["voided"] = self.store.void_approvals(m.id)
                m = self.store.transition(
                    m.id,
                    Event.RECOUNT,
                    actor="bot",
                    now=now,
                    detail=detail,
                    counts=counts,
                    requested_at=now,
                )
                self.notifier.approval(m, [], self._policy(m))
            else:
                self.store.audit(m.id, "bot", "recount", detail, now)
                if drifts:
                    m = self.store.set_fields(m.id, now, counts=counts)
            if drifts:
                self.notifier.notice(m, drift_notice(m.id, drifts, percent, held), now)
        if drifts:
            logger.warning("migration %s: counts moved since the request: %s", m.id, drifts)
        return not held

    async def _skip(self, m: Migration, exc: Exception, now: datetime) -> None:
        """Record once why a pass could not handle ``m``; never raise."""
        if isinstance(exc, BarqError):
            reason = str(exc)
        else:
            logger.error("migration %s: the pass could not handle it", m.id, exc_info=exc)
            reason = f"internal error in the bot ({type(exc).__name__}); see its log"
        if self._skipped.get(m.id) == reason:
            return
        logger.warning("migration %s skipped: %s", m.id, reason)
        try:
            await asyncio.to_thread(self._record_skip, m, reason, now)
        except Exception:
            logger.exception("migration %s: could not record why it was skipped", m.id)
            return
        self._skipped[m.id] = reason
        self.on_change()

    def _record_skip(self, m: Migration, reason: str, now: datetime) -> None:
        with self.store.transaction():
            self.store.audit(m.id, "bot", "skip", {"reason": reason}, now)
            self.notifier.notice(m, f"#{m.id} is waiting: {reason}.", now)

    def _expire(self, m: Migration, policy: policy_rules.ApprovalPolicy) -> None:
        with self.store.transaction():
            now = self.clock()
            m = self.store.transition(m.id, Event.EXPIRE, actor="bot", now=now, finished_at=now)
            self.notifier.approval(m, [], policy)
        logger.info("migration %s expired unapproved", m.id)

    async def wait_idle(self) -> None:
        """Wait until every running migration task has finished (for tests and shutdown)."""
        await self.engine.wait_idle()
