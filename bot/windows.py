"""The downtime windows use case: place approved runs in their target's windows, start them
when the window opens, guard the window's end, and say so to stakeholders.

The state of record is on the migration's row (``due_at``, ``window_end``, ``schedule``), so
a restart picks up where the bot was. ``Service.run_due(now)`` stays the one entry point: it
asks this module, per migration, whether it may start (``gate``), whether a running one must
pause (``guard``) and whether a window-paused one resumes (``paused``). The pure rules are in
bot/domain/windows.py and the calendar in bot/adapters/calendar.py; this module reads and
writes the state store for them on the Service's adapters (as bot/rollback.py does).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot import rollback as rollbacks
from bot.adapters import blocks, calendar
from bot.domain import approval as policy_rules
from bot.domain.lifecycle import ACTIVE, Event, State
from bot.domain.plan import Plan
from bot.domain.records import Migration
from bot.domain.windows import (
    HORIZON,
    MARGIN,
    NoFit,
    Placement,
    Window,
    WindowsConfig,
    estimate_from_rates,
    local_to_utc,
    place,
    place_at,
    reminder_due,
    say_duration,
)
from bot.errors import Conflict, Refused, UsageError

if TYPE_CHECKING:
    from bot.service import Service

logger = logging.getLogger(__name__)
OUTSIDE = blocks.OUTSIDE  # every message about an out-of-window run says it (blocks.about)
REMINDER_LATE = timedelta(minutes=15)  # a reminder later than this after its moment is dropped
PAUSE_CHECK = timedelta(seconds=1)  # how often a pass looks whether a window's pause landed
DEFAULT_ESTIMATE = timedelta(minutes=5)  # nothing to go by: no rows counted, no rate, no field


# -- reading -----------------------------------------------------------------------------------


def config_of(service: Service, target: str) -> WindowsConfig | None:
    """The windows of ``target``, or None if it runs approved migrations at once."""
    entry = service.targets.get(target)
    return None if entry is None else entry.config.windows


_CACHE: dict[tuple[int, datetime], tuple[WindowsConfig, list[Window]]] = {}


def upcoming(config: WindowsConfig, now: datetime, horizon: timedelta = HORIZON) -> list[Window]:
    """The windows open now or opening within ``horizon`` (the calendar of a day is expanded
    once and kept: a pass over many scheduled runs does not expand it again for each)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    key = (id(config), day)
    cached = _CACHE.get(key)
    if cached is None or cached[0] is not config:
        if len(_CACHE) > 256:
            _CACHE.clear()
        cached = (config, calendar.windows(config, day, day + HORIZON + timedelta(days=2)))
        _CACHE[key] = cached
    return [w for w in cached[1] if w.end > now and w.start < now + horizon]


def estimate(service: Service, plan: Plan, counts: dict[str, int]) -> tuple[timedelta, str]:
    """How long the run will take, and from what: the rows per second this runbook (else any
    batch step) achieved on the target before, else the runbook's ``estimate:``."""
    rates, overall = service.store.achieved_rates(plan.target, plan.runbook)
    found = estimate_from_rates(counts, rates, overall) if counts else None
    if found is not None and (rates or overall):
        source = "earlier runs of this runbook" if rates else "earlier batch runs on the target"
        return found, f"{sum(counts.values()):,} rows at the speed of {source}"
    runbook = service.runbooks.get(plan.runbook)
    if runbook is not None and runbook.estimate is not None:
        return runbook.estimate, "the runbook's estimate"
    return DEFAULT_ESTIMATE, "a default: no earlier run to go by and no `estimate:` in the runbook"


def when_text(at: datetime, config: WindowsConfig | None) -> str:
    """A time for Slack: each reader sees it in their own zone; the fallback (and the
    console) shows it in the target's zone."""
    zone = config.zone if config is not None else UTC
    local = at.astimezone(zone)
    fallback = f"{local:%a %d %b %Y %H:%M} {local.tzname()}"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _sched(m: Migration) -> dict[str, Any]:
    return dict(m.schedule or {})


def _est(m: Migration) -> timedelta:
    return timedelta(seconds=float(_sched(m).get("estimate_s", DEFAULT_ESTIMATE.total_seconds())))


# -- requesting ----------------------------------------------------------------------------------


def parse_when(raw: str | None, config: WindowsConfig | None, target: str) -> str | None:
    """Check ``when=``: ``next`` (the default), ``now`` or a local date-time; return it as
    stored (a local time as ISO), or raise UsageError."""
    if raw is None or raw.lower() == "next":
        return None if raw is None else "next"
    if config is None:
        raise UsageError(
            f"{target} has no downtime windows: an approved run starts at once, so leave out when="
        )
    if raw.lower() == "now":
        return "now"
    try:
        local = datetime.fromisoformat(raw.replace(" ", "T"))
    except ValueError:
        raise UsageError(
            f"when={raw!r} is not a time: write when=next, when=now (an emergency, outside the"
            f" windows) or a local time in {config.timezone}, e.g. when=2026-12-05T01:00"
        ) from None
    if local.tzinfo is not None:
        raise UsageError(f"when={raw}: give the local time in {config.timezone}, without offset")
    return local.isoformat(timespec="minutes")


def on_request(service: Service, m: Migration, when: str | None, now: datetime) -> Migration:
    """Inside the request's transaction: record the estimate and ``when``, and say in the
    thread which window the run is planned for (or why none fits)."""
    config = config_of(service, m.target)
    if config is None:
        return m
    if when == "now" and config.emergency is None:
        raise Refused(
            f"{m.target} has no emergency approval policy (windows.emergency), so no run may"
            f" go {OUTSIDE}; request it with when=next or a time in one of its windows"
        )
    est, source = estimate(service, m.plan, m.counts)
    schedule = {"estimate_s": est.total_seconds(), "estimate_from": source, "when": when}
    m = service.store.set_fields(m.id, now, schedule=schedule)
    service.notifier.notice(m, _request_text(config, m, now), now)
    return m


def _request_text(config: WindowsConfig, m: Migration, now: datetime) -> str:
    """The estimate of the requested run ``m`` and the window chosen for it (or why none
    fits, or that it asks to run outside the windows)."""
    est, source = _est(m), _sched(m).get("estimate_from", "")
    if _sched(m).get("when") == "now":
        return (
            f"#{m.id} asks to run {OUTSIDE} (when=now): it needs the emergency approval"
            f" policy of {m.target}; estimate {say_duration(est)} ({source})."
        )
    found = _placement(config, m, now)
    if isinstance(found, NoFit):
        return f"#{m.id}: estimate {say_duration(est)} ({source}); no window fits: {found.reason}."
    return (
        f"#{m.id}: estimate {say_duration(est)} ({source}); once approved it runs in the"
        f" window from {when_text(found.start, config)}"
        f" ({say_duration(found.window.end - found.start)} long)."
    )


async def request_note(service: Service, m: Migration) -> str | None:
    """For the requester's reply on a target with windows: the estimate and the window
    chosen (as its thread says); None on a target without windows or for a run that is
    not waiting for one any more."""
    config = config_of(service, m.target)
    if config is None or m.state not in (State.REQUESTED, State.APPROVED) or not m.schedule:
        return None
    if m.due_at is not None and m.window_end is not None:  # approved and placed already
        return (
            f"#{m.id}: estimate {say_duration(_est(m))}; scheduled for"
            f" {when_text(m.due_at, config)}, in the window until"
            f" {when_text(m.window_end, config)}."
        )
    return await asyncio.to_thread(_request_text, config, m, service.clock())


async def plan_note(service: Service, plan: Plan, counts: dict[str, int]) -> str | None:
    """For the dry run on a target with windows: the estimate and the window it would run
    in if requested now (or why none fits); None on a target without windows."""
    config = config_of(service, plan.target)
    if config is None:
        return None
    now = service.clock()
    est, source = await asyncio.to_thread(estimate, service, plan, counts)
    found = place(upcoming(config, now), now, est)
    where = (
        f"the window from {when_text(found.start, config)}"
        f" ({say_duration(found.window.end - found.start)})"
        if isinstance(found, Placement)
        else f"no window: {found.reason}"
    )
    return f"Estimate {say_duration(est)} ({source}); requested now, it would run in {where}."


def policy_for(service: Service, m: Migration) -> policy_rules.ApprovalPolicy | None:
    """The emergency policy that an out-of-window run (when=now) needs; None otherwise.
    Raise Refused if the target has none."""
    config = config_of(service, m.target)
    if config is None or _sched(m).get("when") != "now":
        return None
    if config.emergency is None:
        raise Refused(
            f"{m.target} has no emergency approval policy (windows.emergency), so no run may"
            f" go {OUTSIDE}; request it with when=next"
        )
    return config.emergency


def on_approved(service: Service, m: Migration, now: datetime) -> Migration:
    """Inside the approval's transaction: note the approval's moment (runs take their turn
    in approval order) and schedule the run in its window, saying so in its thread."""
    config = config_of(service, m.target)
    if config is None:
        return m
    m = service.store.set_fields(m.id, now, schedule={**_sched(m), "approved_at": now.isoformat()})
    if _sched(m).get("when") == "now":
        service.notifier.notice(m, f"#{m.id} is approved to run now, {OUTSIDE}.", now)
        return m
    found = _placement(config, m, now)
    if isinstance(found, NoFit):
        service.notifier.notice(
            m, f"#{m.id} is approved, but no window fits it: {found.reason}.", now
        )
        return m
    return _schedule(service, m, found, now, None)


def _placement(
    config: WindowsConfig, m: Migration, now: datetime, *, after: datetime | None = None
) -> Placement | NoFit:
    est, when = _remaining_estimate(m), _sched(m).get("when")
    windows = upcoming(config, now)
    if when not in (None, "next", "now") and after is None:
        at = local_to_utc(datetime.fromisoformat(when), config.zone)
        return place_at(windows, now, est, at)
    return place(windows, now, est, after=after)


def _remaining_estimate(m: Migration) -> timedelta:
    """The estimate of what is left of the run (all of it before it starts)."""
    est = _est(m)
    done = float(_sched(m).get("rows_done", 0))
    total = float(sum(m.counts.values()))
    if total and done:
        est = est * max(0.1, 1 - done / total)
    return est


def _schedule(
    service: Service, m: Migration, found: Placement, now: datetime, moved: str | None
) -> Migration:
    """Persist the placement; announce it (scheduled or moved); skip reminders whose moment
    has passed (none for a window less than an hour away)."""
    config = config_of(service, m.target)
    assert config is not None
    reminded = [
        r.total_seconds() for r in config.reminders if found.start - r <= now
    ]  # passed already: never sent
    schedule = {**_sched(m), "reminded": reminded}
    m = service.store.set_fields(
        m.id, now, due_at=found.start, window_end=found.window.end, schedule=schedule
    )
    when = when_text(found.start, config)
    text = (
        f"#{m.id} was moved to the window from {when}: {moved}."
        if moved
        else f"#{m.id} is scheduled for {when}, in the window until"
        f" {when_text(found.window.end, config)}."
    )
    service.store.audit(
        m.id, "bot", "schedule", {"due_at": found.start.isoformat(), "moved": moved or ""}, now
    )
    service.notifier.notice(m, text, now)
    service.notifier.announce(m, f"{text} ({m.runbook} on {m.target}, {m.plan.args()})", now)
    return m


# -- run_due ------------------------------------------------------------------------------------


def gate(service: Service, m: Migration, now: datetime) -> bool:
    """Whether the approved run ``m`` may start at ``now`` (its window is open and holds
    it, and its turn has come). Places it if it has no window yet, sends reminders, moves a
    run whose window was missed; raise Conflict (the reason it waits, said once in its
    thread) when it waits its turn."""
    config = config_of(service, m.target)
    if config is None:
        return True
    if _sched(m).get("when") == "now" or _sched(m).get("bypass"):
        return True
    if _quiet(config, m, now):
        return False  # the common case of a pass: nothing to write, no lock taken
    with service.store.transaction():
        m = service.store.lock(m.id)
        if m.state is not State.APPROVED:
            return False
        if m.due_at is None:
            found = _placement(config, m, now)
            if isinstance(found, NoFit):
                raise Conflict(f"no window fits it: {found.reason}")
            m = _schedule(service, m, found, now, None)
        assert m.due_at is not None and m.window_end is not None
        if now < m.due_at and not _still_fits(config, m, now):
            found = _placement(config, m, now)
            if isinstance(found, NoFit):
                raise Conflict(f"its window is gone and no other fits: {found.reason}")
            why = "its window was taken away (a blackout or a change of the windows)"
            m = _schedule(service, m, found, now, why)
        assert m.due_at is not None and m.window_end is not None
        if now < m.due_at:
            _reminders(service, m, config, now)
            return False
        if m.window_end - now < _remaining_estimate(m) * MARGIN:
            found = _placement(config, m, now, after=now)
            if isinstance(found, NoFit):
                raise Conflict(f"its window was missed and no other fits: {found.reason}")
            if found.start > now:
                left = say_duration(max(m.window_end - now, timedelta(0)))
                _schedule(service, m, found, now, f"its window had {left} left, too little")
                return False
    _turn(service, m, config)
    return True


def _quiet(config: WindowsConfig, m: Migration, now: datetime) -> bool:
    """Whether ``m`` just waits for its window at ``now``: placed, still fitting, and no
    reminder to send or drop."""
    if m.due_at is None or now >= m.due_at:
        return False
    sent = set(_sched(m).get("reminded", []))
    if any(r.total_seconds() not in sent and m.due_at - r <= now for r in config.reminders):
        return False
    return _still_fits(config, m, now)


def _still_fits(config: WindowsConfig, m: Migration, now: datetime) -> bool:
    """Whether the window ``m`` is scheduled in is still in the calendar and holds it (a
    blackout added later, or windows changed, take it away)."""
    assert m.due_at is not None
    window = next((w for w in upcoming(config, now) if w.holds(m.due_at)), None)
    return window is not None and window.end - m.due_at >= _remaining_estimate(m) * MARGIN


def _turn(service: Service, m: Migration, config: WindowsConfig) -> None:
    """Raise Conflict unless ``m`` is among the first ``max_concurrent`` on its target (those
    running, then the due ones in approval order)."""
    others = service.store.in_states(State.APPROVED, *sorted(ACTIVE), target=m.target)
    on_target = [o for o in others if o.id != m.id]
    running = [o for o in on_target if o.state in ACTIVE or service.engine.is_running(o.id)]
    ahead = [
        o
        for o in on_target
        if o.state is State.APPROVED
        and not service.engine.is_running(o.id)
        and o.due_at is not None
        and o.due_at <= m.due_at  # type: ignore[operator]
        and _approved_order(o) < _approved_order(m)
    ]
    if len(running) + len(ahead) >= config.max_concurrent:
        raise Conflict(  # the same words while it waits: said once in its thread
            f"it waits its turn in its window: at most {config.max_concurrent} run at once on"
            f" {m.target}, in the order they were approved"
        )


def _approved_order(m: Migration) -> tuple[str, int]:
    return str(_sched(m).get("approved_at", "")), m.id


def _reminders(service: Service, m: Migration, config: WindowsConfig, now: datetime) -> None:
    assert m.due_at is not None
    schedule = _sched(m)
    sent = set(schedule.get("reminded", []))
    for before in config.reminders:
        seconds = before.total_seconds()
        if seconds in sent or m.due_at - before > now:
            continue
        if reminder_due(m.due_at, before, now, late=REMINDER_LATE):
            service.notifier.announce(
                m,
                f"Reminder: #{m.id} ({m.runbook} on {m.target}) starts in"
                f" {say_duration(m.due_at - now)}, at {when_text(m.due_at, config)}.",
                now,
            )
        sent.add(seconds)  # sent, or its moment passed: never late
        schedule["reminded"] = sorted(sent)
        service.store.set_fields(m.id, now, schedule=schedule)


def guard(service: Service, m: Migration, now: datetime) -> None:
    """At a running run's window end (plus overrun): ask it to pause at its next batch
    boundary, say so, and page (a run stopped by its window needs someone to know)."""
    config = config_of(service, m.target)
    if config is None or m.window_end is None or _sched(m).get("when") == "now":
        return
    if now < m.window_end + config.overrun or m.pause_requested or m.state is not State.RUNNING:
        return
    with service.store.transaction():
        m = service.store.lock(m.id)
        if m.state is not State.RUNNING or m.pause_requested:
            return
        rollback = config.at_end == "rollback"
        schedule = {**_sched(m), "window_paused": True, "rollback_at_end": rollback}
        m = service.store.set_fields(m.id, now, pause_requested=True, schedule=schedule)
        service.store.audit(m.id, "bot", "window-end", {"at_end": config.at_end}, now)
        then = (
            "it stops at the next batch boundary and its rollback steps run"
            if rollback
            else "it pauses at the next batch boundary and resumes in the next window that"
            " holds the rest"
        )
        service.notifier.notice(
            m,
            f"#{m.id}: its window ended at {when_text(m.window_end, config)}"  # type: ignore[arg-type]
            + (f" (plus {say_duration(config.overrun)} overrun)" if config.overrun else "")
            + f"; {then}.",
            now,
        )
        what = "rolled back" if rollback else "paused"
        service.engine.pager.trigger(
            m, f"#{m.id} {what}: its downtime window ended mid-run", {"target": m.target}, now
        )
    service.engine.signal(m.id, pause=True)


def paused(service: Service, m: Migration, now: datetime) -> bool:
    """For a run its window paused: place it in the next window that holds the rest, and
    resume it (return True) once that window is open. Never outside a window."""
    config = config_of(service, m.target)
    schedule = _sched(m)
    if config is None or not schedule.get("window_paused"):
        return False
    with service.store.transaction():
        m = service.store.lock(m.id)
        if m.state is not State.PAUSED:
            return False
        if _sched(m).get("rollback_at_end"):
            _roll_back(service, m, now)
            return False
        if not _sched(m).get("placed_after_pause"):
            paused_at = m.updated_at  # the pause's moment (a step in flight finished first)
            rows = sum(r.rows for r in service.store.step_runs(m.id) if r.phase == "run")
            m = service.store.set_fields(
                m.id, now, schedule={**_sched(m), "rows_done": rows, "placed_after_pause": True}
            )
            found = _placement(config, m, now, after=now)
            if isinstance(found, NoFit):
                raise Conflict(
                    f"paused by its window's end, and no window fits the rest: {found.reason}"
                )
            assert m.window_end is not None
            overrun = paused_at - m.window_end
            late = f", {say_duration(overrun)} after it" if overrun > timedelta(seconds=1) else ""
            why = f"paused at its window's end{late}; the rest runs then"
            m = _schedule(service, m, found, now, why)
        assert m.due_at is not None and m.window_end is not None
        if now < m.due_at:
            return False
        if m.window_end - now < _remaining_estimate(m) * MARGIN:
            found = _placement(config, m, now, after=now)
            if isinstance(found, NoFit):
                raise Conflict(f"no window fits the rest: {found.reason}")
            if found.start > now:
                _schedule(service, m, found, now, "too little of its window was left")
                return False
        found_end = m.window_end
        schedule = {
            k: v for k, v in _sched(m).items() if k not in ("window_paused", "placed_after_pause")
        }
        m = service.store.transition(
            m.id,
            Event.RESUME,
            actor="bot",
            now=now,
            error=None,
            finished_at=None,
            schedule=schedule,
        )
        service.notifier.notice(
            m,
            f"#{m.id} resumes in its window, until {when_text(found_end, config)}.",
            now,
        )
    return True


def why_not_resume(service: Service, m: Migration, now: datetime) -> str | None:
    """Why a run its window paused is not resumed by hand: it resumes by itself at the
    start of the next window that holds the rest, never outside one."""
    if config_of(service, m.target) is None or not _sched(m).get("window_paused"):
        return None
    when = f" at {when_text(m.due_at, config_of(service, m.target))}" if m.due_at else ""
    return (
        f"#{m.id} was paused by its window's end; it resumes by itself in the next window that"
        f" holds the rest{when if m.due_at and m.due_at > now else ''}, never outside one"
    )


def _roll_back(service: Service, m: Migration, now: datetime) -> None:
    """on_window_end: rollback. The run stopped at its window's end ends as failed (rolled
    back), and its runbook's rollback is requested and approved by the bot, as the target's
    configuration says; the next pass starts it (at once: it is not held for a window)."""
    m = service.store.transition(
        m.id,
        Event.FAIL,
        actor="bot",
        now=now,
        finished_at=now,
        error="its window ended before it finished (on_window_end: rollback): rolled back",
        detail={"reason": "its window ended; on_window_end: rollback"},
    )
    undo, _ = rollbacks.request_in_transaction(service, "bot", m.id)
    service.store.record_decision(
        undo.id,
        user="bot",
        decision="approve",
        plan_hash=undo.plan.hash,
        now=now,
        reason="on_window_end: rollback",
        event=Event.APPROVE,
    )
    service.store.set_fields(undo.id, now, schedule={"bypass": "rollback at its window's end"})
    runs = service.store.step_runs(m.id)
    service.notifier.progress(m, runs, now, None)
    service.notifier.outcome(m, runs, now)


def outside_window(service: Service, m: Migration, now: datetime) -> bool:
    """Whether a run found running after a restart is outside its window (so it pauses
    instead of resuming)."""
    config = config_of(service, m.target)
    if config is None or m.window_end is None or _sched(m).get("when") == "now":
        return False
    return now >= m.window_end + config.overrun


def pause_after_restart(service: Service, m: Migration, now: datetime) -> None:
    """A run found running after a restart, its window over: paused, to resume in the next
    window (never outside one)."""
    with service.store.transaction():
        m = service.store.lock(m.id)
        if m.state is not State.RUNNING:
            return
        schedule = {**_sched(m), "window_paused": True}
        m = service.store.transition(
            m.id, Event.PAUSE, actor="bot", now=now, pause_requested=False, schedule=schedule
        )
        service.notifier.notice(
            m, f"#{m.id}: the bot restarted after its window ended; it waits for the next.", now
        )


def next_wake(service: Service, now: datetime, seen: list[Migration]) -> datetime | None:
    """The next instant a pass must run: a window opening for a scheduled run, a reminder,
    or the end (plus overrun) of a running run's window; from the migrations the pass saw
    (``seen``; one it moved meanwhile is seen again by the next pass)."""
    instants: list[datetime] = []
    soon = now + PAUSE_CHECK  # until a window's pause has landed and the rest is placed
    for m in seen:
        config = config_of(service, m.target)
        if config is None or m.due_at is None or m.state in ACTIVE:
            continue
        instants.append(m.due_at)
        instants.extend(m.due_at - r for r in config.reminders)
        if m.window_end is not None:  # started in this pass: its window's end
            instants.append(m.window_end + config.overrun)
        if _sched(m).get("window_paused") and not _sched(m).get("placed_after_pause"):
            instants.append(soon)
    for m in (m for m in seen if m.state in ACTIVE):
        config = config_of(service, m.target)
        if config is not None and m.window_end is not None:
            end = m.window_end + config.overrun
            instants.append(end if end > now else soon)  # past its end: until it pauses
    later = [i for i in instants if i > now]
    return min(later) if later else None


# -- /migrate windows and /migrate schedule ------------------------------------------------------


async def listing(service: Service, target: str | None, now: datetime) -> str:
    """The next windows of ``target`` (or of every target with windows): local time,
    duration, what is scheduled in each, blackouts."""
    return await asyncio.to_thread(_listing, service, target, now)


def _listing(service: Service, target: str | None, now: datetime) -> str:
    names = [target] if target else sorted(service.targets)
    if target is not None:
        service._target(target)
    lines: list[str] = []
    for name in names:
        config = config_of(service, name)
        if config is None:
            if target is not None:
                lines.append(f"*{name}* has no downtime windows: approved runs start at once.")
            continue
        runs = service.store.scheduled(name)
        lines.append(
            f"*{name}* (times in {config.timezone}; max {config.max_concurrent} at once;"
            f" at the end: {config.on_window_end})"
        )
        for w in upcoming(config, now, timedelta(days=14))[:8]:
            inside = [f"#{m.id}" for m in runs if m.due_at is not None and w.holds(m.due_at)]
            what = f" — {', '.join(inside)}" if inside else ""
            reason = f" ({w.reason})" if w.reason else ""
            lines.append(
                f"• {when_text(w.start, config)}, {say_duration(w.end - w.start)}{reason}{what}"
            )
        for b in calendar.blackouts(config):
            if b.end > now:
                why = f": {b.reason}" if b.reason else ""
                lines.append(
                    f"• blackout {when_text(b.start, config)} to {when_text(b.end, config)}{why}"
                )
    return "\n".join(lines) or "No target has downtime windows: approved runs start at once."


async def reschedule(service: Service, migration_id: int, user: str, when: str) -> Migration:
    """Move a scheduled run to the window ``when`` names (requester or approver); its
    approvals stay valid (they bind to the plan). Announced in its thread."""
    m = await asyncio.to_thread(service.store.get, migration_id)
    policy = service._policy(m)
    groups = await service.directory.groups_of(user, policy.approver_groups)
    if user != m.requester and not policy_rules.may_approve(policy, user, groups):
        raise Refused(f"only the requester (<@{m.requester}>) or an approver may move #{m.id}")
    m = await asyncio.to_thread(_reschedule, service, migration_id, user, when)
    service.on_change()
    service.wake()
    return m


def _reschedule(service: Service, migration_id: int, user: str, raw: str) -> Migration:
    now = service.clock()
    with service.store.transaction():
        m = service.store.lock(migration_id)
        config = config_of(service, m.target)
        if config is None:
            raise Refused(f"{m.target} has no downtime windows; #{m.id} runs once approved")
        if m.state not in (State.REQUESTED, State.APPROVED):
            raise Refused(f"#{m.id} is {m.state.value}; only a run not yet started can move")
        when = parse_when(raw, config, m.target)
        if when == "now":
            raise UsageError("a run moves to a window; to run now, request it with when=now")
        m = service.store.set_fields(m.id, now, schedule={**_sched(m), "when": when})
        found = _placement(config, m, now)
        if isinstance(found, NoFit):
            raise Refused(f"#{m.id} cannot move there: {found.reason}")
        if m.state is State.REQUESTED:
            m = service.store.set_fields(m.id, now, due_at=None, window_end=None)
            service.notifier.notice(
                m,
                f"<@{user}> moved #{m.id}: once approved it runs in the window from"
                f" {when_text(found.start, config)}.",
                now,
            )
            return m
        return _schedule(service, m, found, now, f"moved by <@{user}>")
