"""Tenant consolidation on PostgreSQL (or SQLite: ``--dialect sqlite``): how long moving one
tenant's Tasks (by default all of the table's rows: ``--tenants 1``) to another tenant takes,
measured several ways in one run on identical freshly loaded data each time (the table is
reloaded, vacuumed and checkpointed before every measurement): (a) the single ``UPDATE Tasks
SET TenantId = :target WHERE TenantId = :source``; (b) the bot's batch step (``run_batches``
with default BatchSettings: short keyset transactions, each with its checkpoint); (b') the
bot's whole run of ``runbooks/tenant-consolidation.yaml`` (every step: journalled moves of
Tasks, Users and AuditLogs, and the checks; ``--runbook`` runs another file); (b'') its
rollback right after it (the run not timed: the journalled rows moved back and the checks
that the data is back); (c) a
hand-written fixed-size keyset loop for reference; (d) the runbook's C# offset loop
(Skip/Take 1000 ordered by Id, a commit per page and ``Task.Delay(100)``), capped at
``--offset-cap-seconds``, and the same loop with no sleep to show the OFFSET slowdown itself
(pages per second early vs late). ``--only`` picks some of these ways. Prints JSON: seconds
and rows/s of each, batch/single, run/single and keyset/single ratios, the bot's longest batch
transaction, its batch count, and bot rows/s over offset-loop rows/s, each against its target.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench import _loops as loops
from bench._botrunbook import RUNBOOK, run_bot_rollback, run_bot_runbook
from bench._botstep import run_bot_step
from bench._common import (
    SOURCE_TENANT,
    TARGET_TENANT,
    MeasurementError,
    checkpoints,
    fresh_tasks,
    logger,
    machine,
    print_figures,
    rnd,
    scratch_database,
    setup_logging,
    tenant_counts,
)
from bot.local.barq_schema import load_tasks_bulk

TARGET_BATCH_OVER_SINGLE = 1.2
TARGET_RUN_OVER_SINGLE = 1.4
TARGET_LONGEST_BATCH_MS = 250.0
TARGET_BOT_OVER_OFFSET = 5.0
WAYS = (
    "single",
    "bot_batch_step",
    "bot_runbook",
    "bot_rollback",
    "keyset",
    "offset_loop",
    "offset_loop_no_sleep",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.tenant_consolidation")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in Tasks")
    parser.add_argument(
        "--tenants", type=int, default=1, help="tenants the rows cycle over (1: all rows move)"
    )
    parser.add_argument("--keyset-batch", type=int, default=10_000)
    parser.add_argument("--offset-page", type=int, default=1000)
    parser.add_argument("--offset-sleep-ms", type=float, default=100.0)
    parser.add_argument("--offset-cap-seconds", type=float, default=300.0)
    parser.add_argument(
        "--dialect",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="a scratch PostgreSQL database, or a SQLite file in a temporary directory",
    )
    parser.add_argument(
        "--only",
        default=",".join(WAYS),
        help=f"comma-separated ways to measure, in this order (default: {','.join(WAYS)})",
    )
    parser.add_argument(
        "--runbook", type=Path, default=RUNBOOK, help="the runbook bot_runbook runs"
    )
    parser.add_argument(
        "--baseline-runbook",
        type=Path,
        default=None,
        help="also run this runbook (e.g. an earlier version of the file, named as the runbook"
        " is) right after bot_runbook, as bot_runbook_baseline: both against the same single",
    )
    args = parser.parse_args(argv)
    args.ways = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(args.ways) - set(WAYS))
    if unknown or not args.ways:
        parser.error(f"--only: unknown way(s) {unknown or '(none given)'}; pick from {WAYS}")
    if args.baseline_runbook is not None and "bot_runbook" in args.ways:
        at = args.ways.index("bot_runbook") + 1
        args.ways[at:at] = ["bot_runbook_baseline"]
    return args


@contextmanager
def scratch(dialect: str) -> Iterator[str]:
    """A scratch database of ``dialect``, dropped (or deleted) afterwards; yields its URL."""
    if dialect == "postgresql":
        with scratch_database("barq_bench_tc") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="barq_bench_tc_") as folder:
        yield f"sqlite:///{Path(folder) / 'bench.sqlite3'}"


def fresh(url: str, args: argparse.Namespace) -> None:
    """Identical fresh data for the next measurement: Tasks reloaded (PostgreSQL: vacuumed and
    checkpointed; SQLite: the bot's tables emptied too, so each run starts alike)."""
    if not url.startswith("sqlite"):
        fresh_tasks(url, args.rows, args.tenants)
        return
    started = time.perf_counter()
    engine = create_engine(url, poolclass=NullPool)
    try:
        load_tasks_bulk(engine, args.rows, tenants=args.tenants)
        with engine.begin() as conn:
            for table in ("barq_journal", "barq_checkpoints"):
                exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t"
                if conn.execute(text(exists), {"t": table}).first():
                    conn.execute(text(f"DELETE FROM {table}"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM"))
    finally:
        engine.dispose()
    logger.info("loaded %d rows in %.1f s", args.rows, time.perf_counter() - started)


def server_checkpoints(url: str) -> int | None:
    """PostgreSQL's checkpoint counter (None on SQLite, which has none)."""
    return None if url.startswith("sqlite") else checkpoints(url)


def measure(
    url: str, args: argparse.Namespace, label: str, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Reload the data, run one way of moving the tenant, and check what it moved."""
    fresh(url, args)
    before = tenant_counts(url)
    started_checkpoints = server_checkpoints(url)
    logger.info("measuring %s", label)
    figures = run()
    ended_checkpoints = server_checkpoints(url)
    if started_checkpoints is not None and ended_checkpoints is not None:
        figures["server_checkpoints_during"] = ended_checkpoints - started_checkpoints
    after = tenant_counts(url)
    if label == "bot_rollback":  # the run and its rollback: every row back where it was
        if after != before:
            raise MeasurementError(f"{label}: rows per tenant {after}, before the run {before}")
        figures["source_rows_before"] = before.get(SOURCE_TENANT, 0)
        logger.info("%s: %s", label, figures)
        return figures
    moved = after.get(TARGET_TENANT, 0) - before.get(TARGET_TENANT, 0)
    figures["source_rows_before"] = before.get(SOURCE_TENANT, 0)
    figures["verified_rows_moved"] = moved
    complete = figures.get("finished", True)
    if complete and after.get(SOURCE_TENANT, 0) != 0:
        raise MeasurementError(f"{label}: {after[SOURCE_TENANT]} rows left in the source tenant")
    if "journalled_rows" in figures and figures["journalled_rows"] != moved:
        raise MeasurementError(
            f"{label}: journalled {figures['journalled_rows']} rows but moved {moved}"
        )
    logger.info("%s: %s", label, figures)
    return figures


def offset_run(url: str, args: argparse.Namespace, sleep_ms: float) -> dict[str, Any]:
    """The offset loop with ``sleep_ms`` between pages, as figures."""
    sleep = sleep_ms / 1000
    run = loops.offset_loop(url, args.offset_page, sleep, args.offset_cap_seconds)
    return loops.offset_figures(run, args.offset_page, sleep)


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios against the targets, for the ways measured."""
    found: dict[str, Any] = {}
    single = results.get("single")
    bot = results.get("bot_batch_step")
    whole = results.get("bot_runbook")
    if single and bot:
        batch_over_single = bot["seconds"] / single["seconds"]
        found |= {
            "batch_over_single": rnd(batch_over_single),
            "batch_over_single_target_max": TARGET_BATCH_OVER_SINGLE,
            "batch_over_single_met": batch_over_single <= TARGET_BATCH_OVER_SINGLE,
        }
    if single and whole:
        run_over_single = whole["seconds"] / single["seconds"]
        found |= {
            "run_over_single": rnd(run_over_single),
            "run_over_single_target_max": TARGET_RUN_OVER_SINGLE,
            "run_over_single_met": run_over_single <= TARGET_RUN_OVER_SINGLE,
        }
    rollback = results.get("bot_rollback")
    if rollback and whole:
        found["rollback_over_run"] = rnd(rollback["seconds"] / whole["seconds"])
    baseline = results.get("bot_runbook_baseline")
    if single and baseline:
        found["baseline_run_over_single"] = rnd(baseline["seconds"] / single["seconds"])
    if single and "keyset" in results:
        found["keyset_over_single"] = rnd(results["keyset"]["seconds"] / single["seconds"])
    if bot:
        longest = bot["longest_batch_ms"]
        found |= {
            "bot_longest_batch_ms": longest,
            "bot_longest_batch_ms_target_max": TARGET_LONGEST_BATCH_MS,
            "bot_longest_batch_met": longest is not None and longest <= TARGET_LONGEST_BATCH_MS,
            "bot_batches": bot["batches"],
        }
    if bot and "offset_loop" in results:
        bot_over_offset = bot["rows_per_second"] / results["offset_loop"]["rows_per_second"]
        found |= {
            "bot_rows_per_second_over_offset_loop": rnd(bot_over_offset, 2),
            "bot_over_offset_target_min": TARGET_BOT_OVER_OFFSET,
            "bot_over_offset_met": bot_over_offset >= TARGET_BOT_OVER_OFFSET,
        }
    if bot and "offset_loop_no_sleep" in results:
        bare = results["offset_loop_no_sleep"]
        found["bot_rows_per_second_over_offset_loop_no_sleep"] = rnd(
            bot["rows_per_second"] / bare["rows_per_second"], 2
        )
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen measurements, in one scratch database."""
    load = os.getloadavg()
    with scratch(args.dialect) as url:
        ways: dict[str, Callable[[], dict[str, Any]]] = {
            "single": lambda: loops.single_statement(url),
            "bot_batch_step": lambda: run_bot_step(url),
            "bot_runbook": lambda: run_bot_runbook(url, args.runbook),
            "bot_runbook_baseline": lambda: run_bot_runbook(url, args.baseline_runbook),
            "bot_rollback": lambda: run_bot_rollback(url, args.runbook),
            "keyset": lambda: loops.keyset_loop(url, args.keyset_batch),
            "offset_loop": lambda: offset_run(url, args, args.offset_sleep_ms),
            "offset_loop_no_sleep": lambda: offset_run(url, args, 0.0),
        }
        results = {label: measure(url, args, label, ways[label]) for label in args.ways}
    first = next(iter(results.values()))
    moving = first["source_rows_before"]
    return {
        "benchmark": "tenant_consolidation",
        "machine": machine(load),
        "dialect": args.dialect,
        "rows": args.rows,
        "tenants": args.tenants,
        "moved_tenant": f"{SOURCE_TENANT} -> {TARGET_TENANT}",
        "moved_rows": moving,
        "moved_share_of_table": rnd(moving / args.rows if args.rows else 0.0, 4),
        "offset_cap_seconds": args.offset_cap_seconds,
        **results,
        "summary": summary(results),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a measurement could not be taken."""
    setup_logging()
    args = parse_args(argv)
    return print_figures("tenant_consolidation", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
