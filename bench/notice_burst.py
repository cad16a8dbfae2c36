"""A burst of notices under Slack's rate limits: ``barq-bot serve`` runs as its own process on
loopback (started by ``bot.local.process.BotProcess``, YAML config + environment) against a
LocalSlack Web API stand-in that enforces Tier 3 limits on ``chat.update`` (a token bucket of
``--per-minute`` calls a minute, bursts of ``--burst``) and answers HTTP 429 with
``Retry-After`` beyond them.

``--migrations`` migrations (50) are requested at once by signed ``/migrate request`` commands
and approved by signed Approve clicks; each runs ``--steps`` command steps printing a line every
half second (so its one progress message is refreshed often: step starts and ends, output
tails, the engine's ticks). The bot coalesces the updates of each message to one per
``--update-seconds`` (3) and waits out 429s with slack_sdk's retry handler.

When every run has finished and the outbox is empty, it prints JSON:
- ``updates_lost``: messages whose final content in Slack is not the newest the bot queued for
  them (compared with the state store's outbox), target 0;
- ``unhandled_429``: 429s that reached the outbox as a failed delivery (the retry handler gave
  up), target 0; ``handled_429``: those LocalSlack answered and the client waited out;
- ``max_updates_per_message_per_window``: the most ``chat.update`` calls one message received
  within any 3 s, target 1 (``--update-seconds 0`` turns coalescing off, for comparison);
- Web API calls per migration, and the seconds from the burst's start (and from the last run's
  end) to the last correct update.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import (
    MeasurementError,
    bot_config,
    logger,
    machine,
    print_figures,
    rnd,
    scratch_database,
)
from bench._common import setup_logging as _setup_logging
from bot.adapters.targets.target import Target
from bot.local import demo, payloads
from bot.local.process import BotProcess
from bot.local.slack import LocalSlack

SECRET = "bench-signing-secret"
RUNBOOK = "bench-notice"
REQUESTER, APPROVER = "U0ALICE", "U0BOB"
WINDOW = 3.0  # the target: at most one update of a message in any 3 s
_FINISHED = ("succeeded", "failed", "cancelled", "expired", "rejected")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.notice_burst")
    parser.add_argument("--migrations", type=int, default=50, help="migrations in the burst")
    parser.add_argument("--steps", type=int, default=3, help="command steps per migration")
    parser.add_argument("--lines", type=int, default=4, help="output lines per step (0.5 s)")
    parser.add_argument("--per-minute", type=float, default=50, help="chat.update limit")
    parser.add_argument("--burst", type=int, default=5, help="chat.update calls at once")
    parser.add_argument("--update-seconds", type=float, default=3.0, help="coalescing window")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds, at most")
    return parser.parse_args(argv)


def runbook_yaml(steps: int, lines: int) -> dict[str, Any]:
    """``steps`` command steps, each printing ``lines`` lines half a second apart; the
    parameter ``n`` tells the migrations apart (``conflicts_on``: they run side by side)."""
    script = (
        "import sys, time\n"
        "for i in range(int(sys.argv[1])):\n"
        "    print('migration', sys.argv[2], 'line', i, flush=True)\n"
        "    time.sleep(0.5)\n"
    )
    return {
        "name": RUNBOOK,
        "description": "Print a few lines per step (benchmark of notices).",
        "targets": ["staging"],
        "parameters": {"n": {"type": "int", "min": 1}},
        "conflicts_on": ["n"],
        "steps": [
            {
                "name": f"step-{k}",
                "kind": "command",
                "description": "print lines",
                "argv": [sys.executable, "-c", script, str(lines), "{n}"],
                "timeout": 120,
            }
            for k in range(1, steps + 1)
        ],
    }


class Watch:
    """What LocalSlack accepted, with when (monotonic): every post and update."""

    def __init__(self) -> None:
        self.updates: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.last_change = 0.0
        self.last_change_wall = 0.0  # time.time() of the same moment

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if kind in ("message", "update") and "ts" in record:
            now = time.monotonic()
            self.last_change, self.last_change_wall = now, time.time()
            if kind == "update":
                self.updates[(record["channel"], record["ts"])].append(now)


async def post(session: aiohttp.ClientSession, url: str, body: str) -> None:
    """POST a signed body to /slack/events; it must be acknowledged."""
    headers = payloads.sign(body, SECRET, payloads.now_ts())
    async with session.post(f"{url}/slack/events", data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise MeasurementError(f"the bot answered {resp.status} to a signed request")


async def burst(session: aiohttp.ClientSession, url: str, slack: LocalSlack, n: int) -> None:
    """``n`` requests as the requester, then an Approve click on each as an approver."""
    for i in range(1, n + 1):
        body = payloads.slash_command(
            "/migrate",
            f"request {RUNBOOK} n={i} on=staging",
            user_id=REQUESTER,
            user_name=demo.USERS[REQUESTER],
            channel_id=demo.CONSOLE,
            response_url=slack.response_url(f"request-{i}"),
            trigger_id=payloads.new_trigger_id(),
        )
        await post(session, url, body)
    await slack.wait_for(lambda s: len(s.messages_in(demo.APPROVALS)) >= n, timeout=300)
    for request in slack.messages_in(demo.APPROVALS)[:n]:
        approve = next(b for b in slack.find_buttons(request) if b["action_id"] == "approve")
        click = payloads.block_actions(
            user_id=APPROVER,
            user_name=demo.USERS[APPROVER],
            channel_id=demo.APPROVALS,
            message=request,
            action=approve,
            response_url=slack.response_url(f"approve-{request['ts']}"),
            trigger_id=payloads.new_trigger_id(),
        )
        await post(session, url, click)
    logger.info("%d migrations requested and approved", n)


def _read(state_db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


async def wait_done(state_db: Path, n: int, seconds: float) -> None:
    """Until ``n`` migrations have finished and the outbox is empty (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = await asyncio.to_thread(_read, state_db, "SELECT state FROM barq_migrations")
        waiting = await asyncio.to_thread(
            _read, state_db, "SELECT COUNT(*) FROM barq_outbox WHERE sent_at IS NULL"
        )
        done = sum(1 for (s,) in states if s in _FINISHED)
        if done >= n and waiting[0][0] == 0:
            return
        await asyncio.sleep(0.5)
    raise MeasurementError(f"not every migration finished and was delivered in {seconds:g} s")


def _shown(message: dict[str, Any]) -> str:
    """What a message shows (text and blocks), without the ids Slack fills in."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("block_id", "action_id")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps([message.get("text"), strip(message.get("blocks") or [])], sort_keys=True)


def check_final(state_db: Path, slack: LocalSlack) -> dict[str, Any]:
    """Compare every message in Slack with the newest version the bot queued for it."""
    newest = {
        key: json.loads(payload)
        for key, payload in _read(
            state_db,
            "SELECT message_key, payload FROM barq_outbox WHERE id IN"
            " (SELECT MAX(id) FROM barq_outbox GROUP BY message_key)",
        )
    }
    located = {k: (c, ts) for k, c, ts in _read(state_db, "SELECT * FROM barq_slack_messages")}
    lost = [
        key
        for key, payload in newest.items()
        if (where := located.get(key)) is None
        or (shown := slack.message(*where)) is None
        or _shown(shown) != _shown(payload)
    ]
    unhandled = _read(
        state_db, "SELECT COUNT(*) FROM barq_outbox WHERE last_error LIKE '%ratelimited%'"
    )[0][0]
    finished = _read(state_db, "SELECT state, COUNT(*) FROM barq_migrations GROUP BY state")
    errors = _read(state_db, "SELECT DISTINCT error FROM barq_migrations WHERE error IS NOT NULL")
    return {
        "messages": len(newest),
        "updates_lost": len(lost),
        "lost_keys": lost[:10],
        "unhandled_429": int(unhandled),
        "migrations_by_state": dict(finished),
        "errors": [e for (e,) in errors][:5],
    }


def _utc(stored: str) -> float:
    """A time as the state store keeps it (UTC, ISO, perhaps without a zone), as a POSIX
    timestamp."""
    at = datetime.fromisoformat(stored)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` within any ``window`` seconds (a little less, for clock jitter)."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while start < end and at - times[start] >= window - 0.05:
            start += 1
        most = max(most, end - start + 1)
    return most


async def measure(target_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The burst, on LocalSlack with chat.update limited, against ``barq-bot serve``."""
    config = bot_config(
        workdir,
        target_url,
        RUNBOOK,
        runbook_yaml(args.steps, args.lines),
        poll_seconds=1.0,
        slack_update_seconds=args.update_seconds,
    )
    watch = Watch()
    async with (
        LocalSlack(
            channels=demo.CHANNELS, usergroups={"S0DBA": [APPROVER]}, users=demo.USERS
        ) as slack,
        BotProcess(workdir, config, slack.api_url, signing_secret=SECRET) as bot,
        aiohttp.ClientSession() as session,
    ):
        slack.rate_limit("chat.update", args.per_minute, burst=args.burst)
        slack.add_listener(watch)
        began = time.monotonic()
        await burst(session, bot.url, slack, args.migrations)
        await wait_done(bot.state_db, args.migrations, args.timeout)
        done = time.monotonic()
        final = await asyncio.to_thread(check_final, bot.state_db, slack)
        last_finish = _read(
            bot.state_db, "SELECT MAX(finished_at), MIN(started_at) FROM barq_migrations"
        )[0]
        calls: dict[str, int] = defaultdict(int)
        for call in slack.calls:
            calls[call["method"]] += 1
        handled = slack.rate_limited["chat.update"]
    windows = [most_in_window(t, WINDOW) for t in watch.updates.values()]
    writes = calls["chat.postMessage"] + calls["chat.update"] - handled
    return {
        **final,
        "handled_429": handled,
        "web_api_calls": dict(calls),
        "accepted_posts_and_updates": writes,
        "calls_per_migration": rnd(writes / args.migrations, 2),
        "chat_update_per_migration": rnd((calls["chat.update"] - handled) / args.migrations, 2),
        "attempts_per_migration_with_429s": rnd(
            (calls["chat.postMessage"] + calls["chat.update"]) / args.migrations, 2
        ),
        "max_updates_per_message_per_window": max(windows, default=0),
        "messages_updated": len(watch.updates),
        "seconds_to_last_correct_update": rnd(watch.last_change - began, 2),
        "seconds_until_everything_finished_and_delivered": rnd(done - began, 2),
        "first_start_and_last_finish": [str(last_finish[1]), str(last_finish[0])],
        "seconds_from_last_finish_to_last_correct_update": rnd(
            watch.last_change_wall - _utc(str(last_finish[0])), 2
        ),
    }


def prepare(target_url: str) -> None:
    """The bot's bookkeeping tables in the target, made before the burst: the first runs on a
    fresh PostgreSQL target, side by side, race on CREATE TABLE IF NOT EXISTS (a duplicate
    pg_type key fails one of them)."""
    target = Target.connect("staging", target_url)
    try:
        target.prepare()
    finally:
        target.engine.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything, in one scratch database and one temporary directory."""
    load = os.getloadavg()
    with (
        scratch_database("barq_bench_notice") as target_url,
        tempfile.TemporaryDirectory(prefix="barq-bench-notice-") as tmp,
    ):
        prepare(target_url)
        figures = asyncio.run(measure(target_url, Path(tmp), args))
    return {
        "benchmark": "notice_burst",
        "machine": machine(load),
        "migrations": args.migrations,
        "steps_per_migration": args.steps,
        "chat_update_limit": {"per_minute": args.per_minute, "burst": args.burst},
        "update_seconds": args.update_seconds,
        **figures,
        "summary": {
            "updates_lost": figures["updates_lost"],
            "updates_lost_met": figures["updates_lost"] == 0,
            "unhandled_429": figures["unhandled_429"],
            "unhandled_429_met": figures["unhandled_429"] == 0,
            "max_updates_per_message_per_window": figures["max_updates_per_message_per_window"],
            "coalescing_met": figures["max_updates_per_message_per_window"] <= 1,
            "calls_per_migration": figures["calls_per_migration"],
            "seconds_to_last_correct_update": figures["seconds_to_last_correct_update"],
            "seconds_from_last_finish_to_last_correct_update": figures[
                "seconds_from_last_finish_to_last_correct_update"
            ],
        },
    }


def setup_logging() -> None:
    """As the other benchmarks (stderr), without the per-request access lines."""
    _setup_logging()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a measurement could not be taken."""
    setup_logging()
    args = parse_args(argv)
    return print_figures("notice_burst", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
