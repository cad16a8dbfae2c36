"""Downtime windows at scale: 1,000 scheduled migrations over 20 targets with mixed windows
(zones both sides of UTC, nightly and weekly crons, one-off windows, blackouts), in the
PostgreSQL state store.

Figures: the start-up reconcile (the first ``run_due`` pass of a freshly built bot over every
scheduled run) and the delay from a window's opening to its run's start, with the default
poll interval (15 s): the scheduler is woken at the window's instant, not at the next poll.

    .venv/bin/python -m bench.windows > windows.json      # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench._common import emit, machine, percentile, rnd, scratch_database, setup_logging
from bot.adapters import calendar
from bot.app import build
from bot.domain.lifecycle import Event, State
from bot.domain.plan import build_plan
from bot.domain.runbook import Runbook
from bot.settings import load_settings

RUNBOOK = """
name: bench-hit
description: add one hit to one item
targets: [{targets}]
parameters:
  slot: {{type: int, min: 1}}
conflicts_on: [slot]
estimate: 1s
steps:
  - name: hit
    kind: batch
    table: items
    key: id
    where: id = :slot
    update: hits = hits + 1
    count: SELECT COUNT(*) FROM items WHERE id = :slot
"""
ZONES = ["Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "UTC", "Pacific/Auckland"]
CRONS = ["0 1 * * *", "0 1 * * sat", "30 22 * * fri", "0 3 1 * *"]


def _windows(i: int, opens: datetime) -> dict[str, Any]:
    """Target ``i``'s windows: a cron of its own, a one-off window opening at ``opens`` (in
    its zone), and on every third target a blackout next month."""
    zone = ZONES[i % len(ZONES)]
    from zoneinfo import ZoneInfo

    local = opens.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    config: dict[str, Any] = {
        "timezone": zone,
        "recurring": [{"cron": CRONS[i % len(CRONS)], "duration": "3h"}],
        "once": [{"start": local.isoformat(timespec="seconds"), "duration": "30m"}],
        "max_concurrent": 1,
    }
    if i % 3 == 0:
        later = (opens + timedelta(days=30)).date()
        config["blackouts"] = [{"from": str(later), "to": str(later + timedelta(days=3))}]
    return config


def _target_db(path: Path, rows: int) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL)"))
        conn.execute(
            text("INSERT INTO items (id, hits) VALUES (:id, 0)"),
            [{"id": n} for n in range(1, rows + 1)],
        )
    engine.dispose()
    return url


async def _measure(args: argparse.Namespace, state_url: str, workdir: Path) -> dict[str, Any]:
    names = [f"t{i:02d}" for i in range(args.targets)]
    runbooks = workdir / "runbooks"
    runbooks.mkdir()
    (runbooks / "bench-hit.yaml").write_text(RUNBOOK.format(targets=", ".join(names)))
    per_target = args.migrations // args.targets
    opens = (datetime.now(UTC) + timedelta(seconds=args.open_after)).replace(microsecond=0)
    targets = {
        name: {
            "url": _target_db(workdir / f"{name}.db", per_target + 1),
            "approval": {"approvers": ["U0BOB"]},
            "windows": _windows(i, opens),
        }
        for i, name in enumerate(names)
    }
    settings = load_settings(
        database_url=state_url,
        runbooks_dir=runbooks,
        backup_dir=workdir / "backups",
        targets=targets,
        approvals_channel="C0APPROVALS",
        notify_channel="C0MIGRATIONS",
        slack_bot_token="xoxb-bench",
        slack_api_url="http://127.0.0.1:9/",
        poll_seconds=args.poll_seconds,
    )
    bot = build(settings)
    store = bot.store
    runbook = bot.service.runbooks.get("bench-hit")
    assert isinstance(runbook, Runbook)
    now = datetime.now(UTC)
    due_now: list[int] = []
    seeding = time.perf_counter()
    for name in names:
        config = settings.targets[name].windows
        assert config is not None
        later = [
            w
            for w in calendar.windows(config, now, now + timedelta(days=60))
            if w.start > opens + timedelta(hours=1)
        ]
        for slot in range(1, per_target + 1):
            plan = build_plan(runbook, {"slot": slot}, name, "sqlite")
            m, _ = store.create(plan, {"hit": 1}, "U0ALICE", now)
            store.record_decision(
                m.id,
                user="U0BOB",
                decision="approve",
                plan_hash=plan.hash,
                now=now,
                event=Event.APPROVE,
            )
            # the first run of each target in the one-off window, the rest days ahead
            window = later[slot % len(later)]
            due, end = (
                (opens, opens + timedelta(minutes=30)) if slot == 1 else (window.start, window.end)
            )
            store.set_fields(
                m.id,
                now,
                due_at=due,
                window_end=end,
                schedule={
                    "estimate_s": 1.0,
                    "approved_at": now.isoformat(),
                    "reminded": [86400.0, 3600.0],
                },
            )
            if slot == 1:
                due_now.append(m.id)
    seeded = time.perf_counter() - seeding

    # the start-up reconcile: the first pass a freshly started bot makes over everything
    started = time.perf_counter()
    await bot.scheduler.run_pass()
    reconcile = time.perf_counter() - started
    moved = [
        m.id
        for m in store.in_states(State.APPROVED)
        if m.id not in due_now and m.due_at is not None and m.due_at < opens
    ]
    bot.scheduler.start()  # polls every poll_seconds; the reconcile asked for a wake-up
    deadline = time.monotonic() + args.open_after + 30
    while time.monotonic() < deadline:
        runs = [store.get(i) for i in due_now]
        if all(m.started_at is not None for m in runs):
            break
        await asyncio.sleep(0.2)
    await bot.service.wait_idle()
    bot.scheduler.shutdown()
    runs = [store.get(i) for i in due_now]
    delays = [(m.started_at - opens).total_seconds() for m in runs if m.started_at is not None]
    if len(delays) != len(due_now):
        raise SystemExit(f"only {len(delays)} of {len(due_now)} runs started after their window")
    return {
        "migrations": args.migrations,
        "targets": args.targets,
        "poll_seconds": args.poll_seconds,
        "seed_seconds": rnd(seeded, 1),
        "reconcile_seconds": rnd(reconcile),
        "reconcile_target_seconds": 1.0,
        "reconcile_met": reconcile <= 1.0,
        "moved_on_reconcile": len(moved),
        "start_delay_seconds_p50": rnd(percentile(delays, 0.5)),
        "start_delay_seconds_max": rnd(max(delays)),
        "start_delay_target_seconds": 2.0,
        "start_delay_met": max(delays) <= 2.0,
        "runs_due_at_the_opening": len(due_now),
        "succeeded": sum(store.get(i).state is State.SUCCEEDED for i in due_now),
    }


def main() -> None:
    """Seed, reconcile, wait for the windows to open, print the figures."""
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--migrations", type=int, default=1000)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument("--open-after", type=float, default=40.0, help="seconds until windows open")
    args = parser.parse_args()
    load = os.getloadavg()
    with scratch_database("barq_bench_win") as state_url, tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(_measure(args, state_url, Path(tmp)))
    emit({**figures, **machine(load)})


if __name__ == "__main__":
    main()
