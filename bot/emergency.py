"""The emergency flow's use cases: what the buttons of a failed or paused run do beyond the
existing cancel, resume and rollback (see bot/adapters/blocks.py ``emergency_actions``).

- :func:`assess` posts in the run's thread what a person needs to decide: the failed step and
  its error, the rows each step committed up to its checkpoint, the backup (where, how big,
  verified or not), the blocking on the target now, and the runbook's check steps run again
  now (read-only), each with its value.
- :func:`acknowledge` acknowledges the run's page (the engine's Pager) and says so.
- :func:`authorize` lets the requester and the target's approvers act, and
  :func:`record_refusal` leaves a refused click in the audit log and the thread.

Every click is audited and said in the thread. Like bot/rollback.py, this module is a use case
of the Service, kept apart so that service.py stays small.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.adapters import step_text
from bot.domain.lifecycle import State
from bot.domain.mrkdwn import escape
from bot.domain.planned import PlannedCheck
from bot.domain.ports import NoPager, Target
from bot.domain.records import Migration, StepRun
from bot.domain.sqltext import compare
from bot.errors import BarqError, InvalidInteraction

if TYPE_CHECKING:
    from bot.service import Service

logger = logging.getLogger(__name__)
_SHOWN_SESSIONS = 5  # blocked sessions listed in an assessment; the rest are counted


@dataclass(frozen=True)
class CheckNow:
    """A runbook check step run again now: its value, and whether it meets its expectation
    (None when the query could not run; ``value`` is then the error)."""

    name: str
    value: Any
    expected: str
    passed: bool | None


async def authorize(
    service: Service, migration_id: int, user: str, verb: str, plan_hash: str
) -> Migration:
    """The migration, once ``user`` may ``verb`` it: its requester or an approver of its
    target. Raise Refused (saying who may) or InvalidInteraction (the button was made for
    another plan)."""
    await service._authorize_control(migration_id, user, verb)
    m = await asyncio.to_thread(service.store.get, migration_id)
    if m.plan.hash != plan_hash:
        raise InvalidInteraction("it was made for another plan")
    return m


async def record_refusal(
    service: Service, migration_id: int, user: str, button: str, why: str
) -> None:
    """Leave a refused click in the audit log and in the run's thread; never raise."""
    try:
        await asyncio.to_thread(_record_refusal, service, migration_id, user, button, why)
    except Exception:  # the clicker has their answer; a lost record is logged
        logger.exception("migration %s: could not record a refused %s click", migration_id, button)


def _record_refusal(service: Service, migration_id: int, user: str, button: str, why: str) -> None:
    store = service.store
    with store.transaction():
        m = store.get(migration_id)
        now = service.clock()
        store.audit(m.id, user, "refused-click", {"button": button, "reason": why}, now)
        service.notifier.notice(
            m, f"<@{user}> clicked {button.capitalize()} on #{m.id}: refused ({why}).", now
        )


async def assess(service: Service, migration_id: int, user: str) -> str:
    """Gather the assessment of a failed or paused run, post it in its thread and audit who
    asked; return its text. The checks and the blocking query run on the target now."""
    m, runs = await service.status(migration_id)
    target = service._target(m.target).target
    checks, blocking = await asyncio.gather(
        asyncio.to_thread(run_checks, m, target), asyncio.to_thread(blocking_now, target)
    )
    now = service.clock()
    text = assessment(m, runs, checks, blocking, user, now)
    await asyncio.to_thread(_post, service, m, user, text, checks, now)
    service.on_change()
    return text


def _post(
    service: Service, m: Migration, user: str, text: str, checks: list[CheckNow], now: datetime
) -> None:
    store = service.store
    with store.transaction():
        detail = {"checks": {c.name: _plain(c.value) for c in checks}, "state": m.state.value}
        store.audit(m.id, user, "assess", detail, now)
        service.notifier.notice(m, text, now)


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (the audit log's detail)."""
    return value if isinstance(value, int | float | str | bool | None) else str(value)


def run_checks(m: Migration, target: Target) -> list[CheckNow]:
    """The runbook's check steps of ``m`` run now on ``target`` (read-only queries), bound as
    the run binds them; a query that fails gives its error as the value."""
    params = {**m.plan.params, "migration_id": m.run_key}
    found = []
    for step in m.plan.steps:
        if not isinstance(step, PlannedCheck):
            continue
        try:
            value = target.scalar(step.sql, params)
            if step.equals_sql is not None:
                other = target.scalar(step.equals_sql, params)
                found.append(CheckNow(step.name, value, f"== {other}", value == other))
                continue
            expect = step.expect or "!= 0"
            number = 0 if value is None else value
            try:
                passed = compare(number, expect)
            except TypeError:  # not a number: it cannot meet a numeric expectation
                passed = False
            found.append(CheckNow(step.name, value, expect, passed))
        except BarqError as exc:
            found.append(CheckNow(step.name, str(exc), step.expect or "", None))
    return found


def blocking_now(target: Target) -> list[dict[str, Any]] | str:
    """The sessions blocked on ``target`` now and who blocks them (the dialect's blocking
    query), or a sentence saying why there is no answer (the dialect has no such query, or
    it failed)."""
    try:
        found = target.blocking_sessions()
    except Exception as exc:  # an assessment says what it could not find out
        logger.warning("blocking query on %s failed: %s", target.name, exc)
        return f"unknown (the blocking query failed: {type(exc).__name__}: {str(exc)[:200]})"
    return f"none ({target.dialect.name} has no blocking query)" if found is None else found


def assessment(
    m: Migration,
    runs: list[StepRun],
    checks: list[CheckNow],
    blocking: list[dict[str, Any]] | str,
    user: str,
    now: datetime,
) -> str:
    """The assessment as mrkdwn (see :func:`assess`)."""
    totals = [t for t in step_text.totals(runs) if t.phase == "run"]
    lines = [
        f"*Assessment of #{m.id}* ({m.plan.runbook} on {m.plan.target},"
        f" {m.state.value}), asked by <@{user}> at {now:%H:%M:%S} UTC"
    ]
    failed = next((t for t in totals if t.state == "failed"), None)
    if failed is not None:
        lines.append(f"*Failed step*: {failed.step_index}. {failed.name}")
    elif m.state is State.PAUSED:
        lines.append(f"*Paused* at step {m.current_step} of {len(m.plan.steps)}")
    if m.error:
        lines.append(f"*Error*: {escape(m.error)}")
    lines.append("*Rows committed per step* (up to the last checkpoint):")
    lines += [f"• {t.step_index}. {t.name}: {t.state}, {t.rows:,} rows" for t in totals] or [
        "• no step has run"
    ]
    lines.append(f"*Backup*: {_backup(m)}")
    lines.append(f"*Blocking now*: {_blocking(blocking)}")
    lines.append("*Integrity checks now* (the runbook's check steps, read-only):")
    lines += [_check(c) for c in checks] or ["• the runbook has no check steps"]
    return "\n".join(lines)


def _backup(m: Migration) -> str:
    if not m.backups:
        return "none taken by this run"
    b = m.backups[-1]
    size = f"{b['size_bytes']:,} bytes" if b.get("size_bytes") is not None else "size unknown"
    checked = "verified" if b.get("verified") else "NOT verified"
    more = f" (the latest of {len(m.backups)})" if len(m.backups) > 1 else ""
    return f"`{b.get('location')}`, {size}, {checked}{more}"


def _blocking(found: list[dict[str, Any]] | str) -> str:
    if isinstance(found, str):
        return found
    if not found:
        return "none (no session is blocked)"
    shown = [
        f"\n• session {r.get('session_id')} blocked by {r.get('blocking_session_id')}"
        f" ({r.get('wait_type')}, {r.get('wait_time')} ms, {r.get('command')})"
        for r in found[:_SHOWN_SESSIONS]
    ]
    rest = len(found) - len(shown)
    return f"{len(found)} blocked" + "".join(shown) + (f"\n• … and {rest} more" if rest else "")


def _check(c: CheckNow) -> str:
    if c.passed is None:
        return f"• {c.name}: could not run ({escape(str(c.value))})"
    mark = "✓" if c.passed else "✗"
    return f"• {mark} {c.name}: {c.value!r} (expected {c.expected})"


async def acknowledge(service: Service, m: Migration, user: str) -> str:
    """Acknowledge the page of ``m`` for ``user`` (the engine's Pager), audit it and say it
    in the thread; return what was said."""
    said = await asyncio.to_thread(_acknowledge, service, m.id, user)
    service.on_change()
    return said


def _acknowledge(service: Service, migration_id: int, user: str) -> str:
    store, pager = service.store, service.engine.pager
    with store.transaction():
        m = store.get(migration_id)
        now = service.clock()
        store.audit(m.id, user, "acknowledge", {}, now)
        pager.acknowledge(m, user, now)
        said = f"<@{user}> acknowledged the page for #{m.id} and is on it."
        if isinstance(pager, NoPager):
            said += (
                " (No pager is configured, so no page went out; the acknowledgement is recorded.)"
            )
        service.notifier.notice(m, said, now)
    return said
