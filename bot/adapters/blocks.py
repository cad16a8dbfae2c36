"""Domain objects → Block Kit messages (pure). Every message also has a plain-text fallback."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.adapters import step_text
from bot.domain.approval import ApprovalPolicy, PriorApproval, still_wanted
from bot.domain.lifecycle import State, state_phrase
from bot.domain.mrkdwn import escape
from bot.domain.plan import Plan, PlannedStep
from bot.domain.progress import LiveProgress, StepTotal, rows_so_far, steps_done
from bot.domain.records import AuditEntry, Migration, StepRun
from bot.domain.rollback import verdict
from bot.domain.runbook import Parameter, Runbook
from bot.domain.touched import rows_by_table

Block = dict[str, Any]
Message = dict[str, Any]
_MAX_TEXT = 2900
_MAX_BLOCKS = 50
_ICON = {
    State.REQUESTED: ":hourglass_flowing_sand:",
    State.APPROVED: ":white_check_mark:",
    State.RUNNING: ":arrows_counterclockwise:",
    State.CANCELLING: ":octagonal_sign:",
    State.PAUSED: ":double_vertical_bar:",
    State.SUCCEEDED: ":large_green_circle:",
    State.FAILED: ":red_circle:",
    State.CANCELLED: ":no_entry_sign:",
    State.REJECTED: ":x:",
    State.EXPIRED: ":alarm_clock:",
}
_DECIDED = {  # audit actions shown in /migrate status, as "<verb> by <@user>"
    "approve": "approved",
    "reject": "rejected",
    "cancel": "cancelled",
    "expire": "expired",
    "pause-request": "pause requested",
    "resume": "resumed",
    "throttle": "throttled",
}
PAGE_SIZE = 10  # migrations per page of /migrate status
OUTSIDE = "outside the maintenance window"

USAGE = [
    ("help", "/migrate help", "this help"),
    ("list", "/migrate list", "the runbooks you can run, with their parameters"),
    (
        "plan",
        "/migrate plan tenant-consolidation source_tenant=3 target_tenant=7 on=staging",
        "dry run: resolved steps, SQL, rows each step touches now, checks, rollback",
    ),
    (
        "request",
        "/migrate request tenant-consolidation source_tenant=3 target_tenant=7 on=staging",
        "ask for approval to run that plan",
    ),
    ("status", "/migrate status 12", "one migration: who approved it, when it ran, its steps"),
    ("status", "/migrate status page=2", f"the recent ones, {PAGE_SIZE} a page (page=1 first)"),
    ("cancel", "/migrate cancel 12", "stop it from starting, or stop at the next boundary"),
    ("pause", "/migrate pause 12", "pause a run at the next batch boundary (holds no locks)"),
    ("resume", "/migrate resume 12", "continue a paused or failed run from its checkpoint"),
    (
        "throttle",
        "/migrate throttle 12 50%",
        "slow a run by hand (smaller batches, a wait between them); `off` lifts it",
    ),
    (
        "rollback",
        "/migrate rollback 12",
        "undo a finished run with its runbook's rollback steps (asks for approval like a"
        ' request); an approver may add waive-unverified="why" to restore an unverified backup',
    ),
    (
        "windows",
        "/migrate windows production",
        "the next downtime windows of a target (or all), what is scheduled in each, blackouts;"
        " a request on such a target may add when=next (default), when=<local time> or when=now",
    ),
    (
        "schedule",
        "/migrate schedule 12 when=2026-12-05T01:00",
        "move a scheduled run to another window (requester or approver; approvals stay valid)",
    ),
]


def section(text: str) -> Block:
    """A mrkdwn section, truncated to what Slack accepts."""
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 20] + "\n…(truncated)"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    """A small grey context line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:_MAX_TEXT]}]}


def header(text: str) -> Block:
    """A header block (plain text, at most 150 characters)."""
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def message(text: str, blocks: list[Block]) -> Message:
    """A message with fallback text; blocks beyond Slack's limit are summarised."""
    if len(blocks) > _MAX_BLOCKS:
        blocks = [*blocks[: _MAX_BLOCKS - 1], context("…more in /migrate status")]
    return {"text": text[:3000], "blocks": blocks}


def error(text: str) -> Message:
    """A refusal or a usage error, shown to the user who caused it."""
    return message(text, [section(f":warning: {text}")])


def outside_window(m: Migration) -> bool:
    """Whether ``m`` is an out-of-window run (``when=now`` on a target with windows)."""
    return (m.schedule or {}).get("when") == "now"


def about(m: Migration, msg: Message) -> Message:
    """``msg`` as posted about ``m``: every message about an out-of-window run says
    "outside the maintenance window" (in its fallback text, which notifications show, and in
    its blocks), once. Every notice about a migration passes through here."""
    if not outside_window(m):
        return msg
    text, shown = str(msg.get("text", "")), list(msg.get("blocks") or [])
    if OUTSIDE not in text:
        text = f"{text} ({OUTSIDE})"
    if OUTSIDE not in json.dumps(shown):
        note = context(f":rotating_light: Emergency run, {OUTSIDE}.")
        shown = [*shown[:1], note, *shown[1:]]
    return message(text, shown)


def requested(m: Migration, created: bool, note: str | None = None) -> Message:
    """The requester's answer: the migration is waiting for approval, or (``created`` False)
    it was requested already and nothing new was made; ``note`` is where it will run (the
    estimate and the window chosen, on a target with downtime windows)."""
    extra = [context(note)] if note else []
    if created:
        what = f"*#{m.id}* ({m.plan.runbook} on {m.plan.target}, `{m.plan.args()}`)"
        text = (
            f":inbox_tray: Migration {what} is waiting for approval in the approvals channel "
            f"(plan `{m.plan.short_hash}`). Follow it with `/migrate status {m.id}`."
        )
        return about(m, message(f"Requested migration #{m.id}", [section(text), *extra]))
    text = (
        f":repeat: You requested this already: migration *#{m.id}* {state_phrase(m.state)}"
        f" ({m.plan.runbook} on {m.plan.target}, `{m.plan.args()}`, plan `{m.plan.short_hash}`);"
        " nothing new was requested."
        f" Follow it with `/migrate status {m.id}`."
    )
    return about(m, message(f"Migration #{m.id} was requested already", [section(text), *extra]))


def notice(text: str) -> Message:
    """A note from the bot in a migration's thread."""
    return message(text, [section(f":information_source: {text}")])


def help_message() -> Message:
    """Usage: every subcommand with an example."""
    lines = [f"*{name}* — {what}\n`{example}`" for name, example, what in USAGE]
    return message(
        "/migrate usage",
        [
            header("/migrate — plan, approve and run data migrations"),
            section("\n\n".join(lines)),
            context("Targets are named with on=<target>. Parameters are name=value."),
        ],
    )


def runbook_list(runbooks: list[Runbook]) -> Message:
    """The runbooks, each with its description and parameters."""
    blocks: list[Block] = [header("Runbooks")]
    for rb in runbooks:
        params = ", ".join(_parameter(n, p) for n, p in rb.parameters.items())
        blocks.append(
            section(
                f"*{rb.name}* — {rb.description}\nParameters: {params or 'none'}\n"
                f"Targets: {', '.join(rb.targets)}"
            )
        )
    if not runbooks:
        blocks.append(section("No runbooks are installed."))
    return message(f"{len(runbooks)} runbooks", blocks)


def _parameter(name: str, p: Parameter) -> str:
    """``name`` (type, limits: description), e.g. `years` (int, 1 to 10: keep this many)."""
    limits: list[str] = [p.type]
    if p.min is not None and p.max is not None:
        limits.append(f"{p.min} to {p.max}")
    elif p.min is not None:
        limits.append(f"at least {p.min}")
    elif p.max is not None:
        limits.append(f"at most {p.max}")
    if p.choices:
        limits.append("one of " + ", ".join(f"`{c}`" for c in p.choices))
    if p.pattern:
        limits.append(f"matching `{p.pattern}`")
    return f"`{name}` ({', '.join(limits)}{': ' + p.description if p.description else ''})"


def _step_text(step: PlannedStep, counts: dict[str, int], dialect: str) -> str:
    head = f"*{step.index}. {step.name}* ({step.kind})"
    if step.description:
        head += f" — {step.description}"
    if step.name in counts:
        head += f"\nRows it will touch now: *{counts[step.name]:,}*"
    return f"{head}\n{step_text.body(step, dialect)}"


def plan_message(plan: Plan, counts: dict[str, int], *, title: str = "Dry run") -> Message:
    """The plan: steps with SQL and row counts, checks, rollback. Nothing has changed."""
    blocks: list[Block] = [
        header(f"{title}: {plan.runbook} on {plan.target}"),
        context(
            f"{plan.description} · `{plan.args()}` · dialect {plan.dialect} · "
            f"plan `{plan.short_hash}`"
        ),
    ]
    blocks += [section(_step_text(s, counts, plan.dialect)) for s in plan.steps]
    if plan.rollback:
        blocks.append(header("Rollback"))
        blocks += [section(_step_text(s, {}, plan.dialect)) for s in plan.rollback]
    else:
        blocks.append(context(":warning: This runbook declares no rollback."))
    blocks.append(context(f"Dry run only: nothing was changed. {_touched(plan, counts)}"))
    return message(f"{title}: {plan.runbook} on {plan.target} (plan {plan.short_hash})", blocks)


# the decisions and controls that the approval message names, with who made them
_DONE = {
    "reject": "Rejected",
    "cancel": "Cancelled",
    "pause-request": "Pause requested",
    "pause": "Paused",
    "resume": "Resumed",
}
DECISIONS = frozenset(_DONE)


def decided_by(m: Migration, entry: AuditEntry) -> str:
    """Who rejected, cancelled, paused or resumed ``m``, when, and the reason given."""
    verb = _DONE.get(entry.action, entry.action)
    if entry.action == "cancel" and m.state is State.CANCELLING:
        verb = "Cancel requested"
    reason = entry.detail.get("reason")
    why = f": “{escape(str(reason))}”" if reason else ""
    return f"{verb} by <@{entry.actor}> at {entry.at:%Y-%m-%d %H:%M} UTC{why}"


def approved_reply(m: Migration, approvals: list[PriorApproval], policy: ApprovalPolicy) -> Message:
    """The approver's answer: how many approvals there are of how many, and who may still
    approve; or that the migration is approved and starts when due."""
    count = f"{len(approvals)} of {policy.required} approvals"
    if m.state is State.REQUESTED:
        wanted = still_wanted(policy, m.requester, [a.user for a in approvals])
        text = f"You approved #{m.id}: {count}; waiting for {wanted}."
    elif m.state is State.APPROVED:
        text = f"You approved #{m.id}: {count}; it is approved and starts when due."
    else:
        text = f"You approved #{m.id}: {count}; it is now {m.state.value}."
    return about(m, message(text, [section(f":white_check_mark: {text}")]))


def _touched(plan: Plan, counts: dict[str, int]) -> str:
    """The rows the plan would touch, per table written (a sum would count rows that
    several steps go over more than once)."""
    tables = rows_by_table(plan.steps, counts)
    if not tables:
        return "It writes no table rows."
    parts = []
    for t in tables:
        rows = "unknown rows" if t.rows is None else f"about {_plural(t.rows, 'row', 'rows')}"
        if t.overlap and t.rows is not None:
            rows = (
                f"up to {_plural(t.rows, 'row', 'rows')} ({t.steps} steps may change the same rows)"
            )
        elif t.steps > 1:
            rows += f" ({t.steps} steps)"
        parts.append(f"`{t.table}`: {rows}")
    return "Rows it would touch, by table written: " + "; ".join(parts) + "."


def approval_request(
    m: Migration,
    approvals: list[PriorApproval],
    policy: ApprovalPolicy,
    decided: AuditEntry | None = None,
) -> Message:
    """The approval request: who asked, the plan summary, its hash, and the buttons; once
    rejected, cancelled, paused or resumed, who did it (``decided``) and the reason given."""
    plan = m.plan
    steps = "\n".join(
        f"{s.index}. {s.name} ({s.kind})"
        + (f" — {m.counts[s.name]:,} rows" if s.name in m.counts else "")
        for s in plan.steps
    )
    approved = ", ".join(f"<@{a.user}>" for a in approvals) or "none yet"
    title = f"Migration #{m.id}: {plan.runbook} on {plan.target}"
    undoes = f"*Rollback*: {_plural(len(plan.rollback), 'step', 'steps')}"
    if m.rollback_of is not None:
        title = f"Migration #{m.id}: ROLLBACK of #{m.rollback_of} ({plan.runbook} on {plan.target})"
        undoes = _rollback_note(m)
    blocks: list[Block] = [
        header(title),
        section(
            f"{_ICON[m.state]} *{m.state.value}* · requested by <@{m.requester}>\n"
            f"`{plan.args()}` · plan `{plan.short_hash}`\n{plan.description}"
            + (f"\n{decided_by(m, decided)}" if decided else "")
        ),
        section(f"*Steps*\n{steps}\n{undoes}"),
        context(
            f"Approvals: {len(approvals)}/{policy.required} ({approved}) · "
            f"approvers: {policy.describe()}"
        ),
    ]
    if m.state is State.REQUESTED:
        value = f"{m.id}:{plan.hash}"
        blocks.append(
            {
                "type": "actions",
                "block_id": f"decide:{m.id}",
                "elements": [
                    _button("Approve", "approve", value, "primary"),
                    _button("Reject", "reject", value, "danger"),
                ],
            }
        )
    return message(f"Migration #{m.id} {m.state.value}: {plan.runbook} on {plan.target}", blocks)


def _rollback_note(m: Migration) -> str:
    """What the approvers of a rollback must know: what it undoes, and any waiver."""
    note = (
        f":rewind: *This is a ROLLBACK of #{m.rollback_of}*: it undoes that run with the"
        " runbook's rollback steps (bound to its parameters and its journal), then runs the"
        " runbook's after-rollback checks, which say whether the data is back."
    )
    if m.waiver:
        note += (
            "\n:warning: *It restores a backup that was NOT verified*: waived by"
            f" <@{m.requester}>: “{escape(m.waiver)}”. Approving it accepts that."
        )
    return note


def rollback_requested(m: Migration, created: bool, user: str) -> Message:
    """The answer to ``/migrate rollback``: the rollback waits for approval; or (``created``
    False) one is open already, requested by ``user`` or someone else."""
    if created:
        text = (
            f":rewind: Rollback *#{m.id}* of #{m.rollback_of} ({m.plan.runbook} on"
            f" {m.plan.target}, `{m.plan.args()}`) is waiting for approval in the approvals"
            f" channel (plan `{m.plan.short_hash}`); someone other than you must approve it."
            f" Follow it with `/migrate status {m.id}`."
        )
        return message(f"Requested rollback #{m.id} of #{m.rollback_of}", [section(text)])
    who = "You requested it already" if m.requester == user else f"<@{m.requester}> requested it"
    text = (
        f":repeat: #{m.rollback_of} has an open rollback: *#{m.id}* {state_phrase(m.state)}"
        f" ({who}); nothing new was requested. Follow it with `/migrate status {m.id}`."
    )
    return message(f"Rollback #{m.id} of #{m.rollback_of} is open already", [section(text)])


def _button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        button["style"] = style
    return button


def reject_modal(migration_id: int, plan_hash: str) -> dict[str, Any]:
    """The modal that asks for a rejection reason."""
    return {
        "type": "modal",
        "callback_id": "reject_reason",
        "private_metadata": f"{migration_id}:{plan_hash}",
        "title": {"type": "plain_text", "text": f"Reject #{migration_id}"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why are you rejecting it?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "min_length": 3,
                    "max_length": 500,
                },
            }
        ],
    }


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _elapsed(start: datetime | None, end: datetime) -> str:
    if start is None:
        return "-"
    return _duration((end - start).total_seconds())


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def progress(
    m: Migration, runs: list[StepRun], now: datetime, live: LiveProgress | None = None
) -> Message:
    """The live progress message: step k of n, rows so far (and of how many), rows per
    second, branches of a parallel step, the last output lines of a command, elapsed."""
    total = len(m.plan.steps)
    steps = step_text.totals(runs)
    done_rows = rows_so_far(steps)
    current = next((s for s in m.plan.steps if s.index == m.current_step), None)
    where = f"step {m.current_step} of {total}" + (f": *{current.name}*" if current else "")
    if m.state not in (State.RUNNING, State.CANCELLING, State.PAUSED):
        where = f"{steps_done(steps)} of {total} steps done"
    elapsed = _elapsed(m.started_at, m.finished_at or now)
    undoes = f" (rollback of #{m.rollback_of})" if m.rollback_of is not None else ""
    lines = [
        f"{_ICON[m.state]} *#{m.id} {m.plan.runbook}*{undoes} on *{m.plan.target}* —"
        f" {m.state.value}",
        f"{where} · {done_rows:,} rows so far · elapsed {elapsed}",
    ]
    if m.started_at is None:  # the stages before the run: approved, or ended unstarted
        lines[1] = f"{total} steps; not started" + (
            f" · starts when due; follow it with `/migrate status {m.id}`"
            if m.state is State.APPROVED
            else ""
        )
    if m.state is State.CANCELLING:
        lines.append("Cancel requested: stopping at the next batch or step boundary.")
    elif m.pause_requested and m.state is State.RUNNING:
        lines.append("Pause requested: pausing at the next batch or step boundary.")
    elif m.state is State.PAUSED and (m.schedule or {}).get("window_paused"):
        lines.append(
            "Waiting for a downtime window: paused at its window's end, holds no locks;"
            + (
                f" resumes by itself at {_date(m.due_at)}."
                if m.due_at and m.due_at > now
                else " resumes by itself in the next window that holds the rest."
            )
        )
    elif m.state is State.PAUSED:
        lines.append(f"Paused: holds no locks. Continue with `/migrate resume {m.id}`.")
    if m.manual_throttle is not None and m.state in (State.RUNNING, State.PAUSED):
        lines.append(
            f"Throttled by hand to {100 * (1 - m.manual_throttle):.0f}% of its speed"
            f" (smaller batches, a wait between them) until `/migrate throttle {m.id} off`."
        )
    if outside_window(m) and m.state in (State.RUNNING, State.PAUSED):
        lines.append(f"Emergency run, {OUTSIDE}.")
    elif m.state is State.RUNNING and m.window_end is not None and m.window_end > now:
        lines.append(
            f"Window: {_duration((m.window_end - now).total_seconds())} left"
            f" (ends {_date(m.window_end)})."
        )
    elif m.state is State.APPROVED and m.due_at is not None and m.due_at > now:
        lines.append(f"Waiting for its downtime window: starts at {_date(m.due_at)}.")
    blocks = [section("\n".join(lines))]
    if live is not None and m.state in (State.RUNNING, State.CANCELLING):
        blocks.append(section(_live_text(live, now)))
    blocks.append(_step_table(steps))
    if m.state is State.PAUSED and (emergency := emergency_actions(m)) is not None:
        blocks.append(emergency)
    return message(lines[0].replace("*", ""), blocks)


def _date(at: datetime) -> str:
    """A time each Slack reader sees in their own zone (UTC in the fallback)."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


def _live_text(live: LiveProgress, now: datetime) -> str:
    of = f" of ~{live.total:,}" if live.total is not None else ""
    text = f"*{live.step_name}*: {live.rows:,}{of} rows · {live.rate(now):,.0f} rows/s"
    if live.batches:
        batches = _plural(live.batches, "batch", "batches")
        text += f" · {batches}, longest {live.longest_batch * 1000:.0f} ms"
    if live.retries:
        text += f" · {live.retries} retried after transient errors"
    if live.branches:
        states = [b.state for b in live.branches.values()]
        text += "\n" + ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        shown = list(live.branches.items())[:12]
        text += "\n" + "\n".join(
            f"• {key}: {b.rows:,}"
            + (f"/{b.total:,}" if b.total is not None else "")
            + f" {b.state}"
            for key, b in shown
        )
        if len(live.branches) > len(shown):
            text += f"\n… and {len(live.branches) - len(shown)} more branches"
    if live.tail:
        text += "\n" + step_text.code("\n".join(live.tail))
    return text


def _took(step: StepTotal) -> str:
    """How long a finished step ran, over all its executions."""
    return f", {_duration(step.seconds)}" if step.finished else ""


def _step_table(steps: list[StepTotal]) -> Block:
    mark = {"succeeded": "✓", "failed": "✗", "running": "…", "skipped": "↷"}
    lines = [
        f"{mark.get(r.state, '·')} {'rollback ' if r.phase == 'rollback' else ''}"
        f"{r.step_index}. {r.name}: {r.rows:,} rows{_took(r)}"
        for r in steps
    ]
    return context("\n".join(lines[-20:]) or "no step has started yet")


def outcome(m: Migration, runs: list[StepRun]) -> Message:
    """The final report: per-step rows and durations, or the error and the data's state."""
    plan = m.plan
    title = f"#{m.id} {plan.runbook} on {plan.target} {m.state.value}"
    if m.rollback_of is not None:
        title = f"#{m.id} rollback of #{m.rollback_of} ({plan.runbook} on {plan.target}) " + (
            m.state.value
        )
    lines = [f"{_ICON[m.state]} *{title}* (requested by <@{m.requester}>)"]
    if m.rollback_of is not None:
        lines.append(f"*{verdict(m)}*")
    elif m.error:
        lines.append(f"*Error*: {m.error}")
    if outside_window(m):
        lines.append(f"Emergency run, {OUTSIDE}.")
    table = "\n".join(
        f"{r.step_index}. {r.name}: {r.state}, {r.rows:,} rows{_took(r)}"
        + (f" — {r.detail}" if r.detail else "")
        for r in step_text.totals(runs)
    )
    blocks = [section("\n".join(lines)), section(f"*Steps*\n{table or 'none ran'}")]
    blocks.append(context(data_state(m, runs)))
    if (emergency := emergency_actions(m)) is not None:
        blocks.append(emergency)
    elif _may_roll_back(m):
        value = f"{m.id}:{plan.hash}"
        blocks.append(
            {
                "type": "actions",
                "block_id": f"rollback:{m.id}",
                "elements": [_button("Roll back", "rollback", value, "danger")],
            }
        )
    return message(title, blocks)


def _may_roll_back(m: Migration) -> bool:
    """Whether ``m`` shows a Roll back button: a run (not a rollback) that started and whose
    runbook declares rollback steps."""
    return m.rollback_of is None and bool(m.plan.rollback) and m.started_at is not None


def _confirm(title: str, text: str, yes: str) -> Block:
    """A Block Kit confirmation dialog for a destructive button."""
    return {
        "title": {"type": "plain_text", "text": title[:100]},
        "text": {"type": "mrkdwn", "text": text[:300]},
        "confirm": {"type": "plain_text", "text": yes[:30]},
        "deny": {"type": "plain_text", "text": "Not now"},
        "style": "danger",
    }


def emergency_actions(m: Migration) -> Block | None:
    """The buttons of a failed or paused run (None for any other state): Stop (a run still
    going), Assess, Roll back (a failed run whose runbook can be rolled back), Resume, and
    Acknowledge (the page). Stop, Roll back and Resume ask for confirmation first."""
    if m.state not in (State.FAILED, State.PAUSED):
        return None
    value = f"{m.id}:{m.plan.hash}"
    elements = []
    if m.state is State.PAUSED:
        stop = _button("Stop", "stop", value, "danger")
        stop["confirm"] = _confirm(
            f"Stop #{m.id}?",
            f"#{m.id} is cancelled: what it committed stays committed, and it cannot be"
            " resumed afterwards (it can still be rolled back).",
            "Stop it",
        )
        elements.append(stop)
    elements.append(_button("Assess", "assess", value))
    if m.state is State.FAILED and _may_roll_back(m):
        back = _button("Roll back", "rollback", value, "danger")
        back["confirm"] = _confirm(
            f"Roll back #{m.id}?",
            f"This requests a rollback of #{m.id} with its runbook's rollback steps, as a run"
            " of its own; someone other than you must approve it before it runs.",
            "Request rollback",
        )
        elements.append(back)
    resume = _button("Resume", "resume", value, "primary")
    resume["confirm"] = _confirm(
        f"Resume #{m.id}?",
        f"#{m.id} continues from its last checkpoint. Resume only once the cause is fixed.",
        "Resume",
    )
    resume["confirm"].pop("style")
    elements.append(resume)
    elements.append(_button("Acknowledge", "acknowledge", value))
    return {"type": "actions", "block_id": f"emergency:{m.id}", "elements": elements}


def data_state(m: Migration, runs: list[StepRun]) -> str:
    """What state the target's data is in after the run."""
    if m.state is State.SUCCEEDED:
        n = len(m.plan.steps)
        return (
            "Its one step committed and verified."
            if n == 1
            else f"All {n} steps committed and verified."
        )
    steps = step_text.totals(runs)
    committed = [r for r in steps if r.phase == "run" and r.state == "succeeded"]
    last = runs[-1] if runs and runs[-1].phase == "run" else None
    step = next(
        (t for t in steps if last and (t.phase, t.step_index) == ("run", last.step_index)), None
    )
    left = step_text.left_behind(step) if step and step.state in ("failed", "stopped") else None
    if committed:
        where = f"Committed up to step {committed[-1].step_index} ({committed[-1].name})"
    elif left and step and step.rows:
        where = "No step was completed"
    else:
        where = "Nothing was committed"
    if step and left:
        where += f"; step {step.step_index} ({step.name}) {left}"
    return where + "."


def status(
    m: Migration,
    runs: list[StepRun],
    now: datetime,
    live: LiveProgress | None = None,
    *,
    history: list[AuditEntry] | None = None,
) -> Message:
    """One migration in full: its progress, who requested and decided it when, and how long
    it waited and ran (``history`` is its audit trail)."""
    msg = progress(m, runs, now, live)
    lines = [
        f"requested by <@{m.requester}> at {m.requested_at:%Y-%m-%d %H:%M:%S} UTC · "
        f"`{m.plan.args()}` · plan `{m.plan.short_hash}`",
        *_timeline(m, history or []),
    ]
    if m.error:
        lines.append(f"Error: {m.error}")
    return about(m, message(msg["text"], [*msg["blocks"], context("\n".join(lines))]))


def _timeline(m: Migration, history: list[AuditEntry]) -> list[str]:
    """Decisions with who and when, then start and finish with their durations."""
    lines = []
    for entry in history:
        verb = _DECIDED.get(entry.action)
        if entry.action == "rollback-request":
            verb = f"rollback #{entry.detail.get('rollback')} requested"
        if entry.action == "throttle":
            percent = entry.detail.get("percent")
            verb = "throttle lifted" if percent is None else f"throttled to {100 - percent}% speed"
        if verb is None:
            continue
        who = "" if entry.actor == "bot" else f" by <@{entry.actor}>"
        line = f"{verb}{who} at {_clock(m, entry.at)} ({_after_request(m, entry.at)})"
        lines.append(line + (f": {entry.detail['reason']}" if entry.detail.get("reason") else ""))
    if m.started_at is not None:
        lines.append(f"started at {_clock(m, m.started_at)} ({_after_request(m, m.started_at)})")
    if m.finished_at is not None:
        line = f"finished at {_clock(m, m.finished_at)}"
        if m.started_at is not None:
            line += f" (ran {_elapsed(m.started_at, m.finished_at)})"
        lines.append(line)
    return lines


def _clock(m: Migration, at: datetime) -> str:
    """The time of day, with the date too when it is not the day of the request."""
    return f"{at:%H:%M:%S}" if at.date() == m.requested_at.date() else f"{at:%Y-%m-%d %H:%M:%S}"


def _after_request(m: Migration, at: datetime) -> str:
    return f"{_elapsed(m.requested_at, at)} after the request"


def status_list(items: list[Migration], *, page: int = 1, more: bool = False) -> Message:
    """A page of migrations, newest first, one line each; ``more`` when older ones follow."""
    if not items:
        text = (
            "No migrations yet. Try `/migrate list`."
            if page == 1
            else f"No migrations on page {page}: there are fewer. See `/migrate status`."
        )
        return message("No migrations", [section(text)])
    lines = [
        f"{_ICON[m.state]} *#{m.id}* {m.plan.runbook}"
        + (f" (rollback of #{m.rollback_of})" if m.rollback_of is not None else "")
        + f" on {m.plan.target} — {m.state.value} "
        f"· <@{m.requester}> · {m.requested_at:%Y-%m-%d %H:%M}"
        for m in items
    ]
    title = "Recent migrations" if page == 1 else f"Migrations, page {page}"
    footer = f"page {page}" + (
        f" · older ones: `/migrate status page={page + 1}`" if more else " · no older ones"
    )
    return message(title, [header(title), section("\n".join(lines)), context(footer)])
