"""Tenant consolidation on PostgreSQL: how long moving one tenant's Tasks (by default all of
the table's rows: ``--tenants 1``) to another tenant takes, measured four ways in one run on
identical freshly loaded data each time (the table is reloaded, vacuumed and checkpointed
before every measurement): (a) the single ``UPDATE Tasks SET TenantId = :target WHERE
TenantId = :source``; (b) the bot's batch step (``run_batches`` with default BatchSettings:
short keyset transactions, each with its checkpoint); (c) a hand-written fixed-size keyset
loop for reference; (d) the runbook's C# offset loop (Skip/Take 1000 ordered by Id, a commit
per page and ``Task.Delay(100)``), capped at ``--offset-cap-seconds``, and the same loop with
no sleep to show the OFFSET slowdown itself (pages per second early vs late). Prints JSON:
seconds and rows/s of each, batch/single and keyset/single ratios, the bot's longest batch
transaction, its batch count, and bot rows/s over offset-loop rows/s, each against its target.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from bench import _loops as loops
from bench._botstep import run_bot_step
from bench._common import (
    SOURCE_TENANT,
    TARGET_TENANT,
    MeasurementError,
    checkpoints,
    emit,
    fresh_tasks,
    logger,
    machine,
    rnd,
    scratch_database,
    setup_logging,
    tenant_counts,
)

TARGET_BATCH_OVER_SINGLE = 1.2
TARGET_LONGEST_BATCH_MS = 250.0
TARGET_BOT_OVER_OFFSET = 5.0


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
    return parser.parse_args(argv)


def measure(
    url: str, args: argparse.Namespace, label: str, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Reload the data, run one way of moving the tenant, and check what it moved."""
    fresh_tasks(url, args.rows, args.tenants)
    before = tenant_counts(url)
    started_checkpoints = checkpoints(url)
    logger.info("measuring %s", label)
    figures = run()
    figures["server_checkpoints_during"] = checkpoints(url) - started_checkpoints
    after = tenant_counts(url)
    moved = after.get(TARGET_TENANT, 0) - before.get(TARGET_TENANT, 0)
    figures["source_rows_before"] = before.get(SOURCE_TENANT, 0)
    figures["verified_rows_moved"] = moved
    complete = figures.get("finished", True)
    if complete and after.get(SOURCE_TENANT, 0) != 0:
        raise MeasurementError(f"{label}: {after[SOURCE_TENANT]} rows left in the source tenant")
    logger.info("%s: %s", label, figures)
    return figures


def offset_run(url: str, args: argparse.Namespace, sleep_ms: float) -> dict[str, Any]:
    """The offset loop with ``sleep_ms`` between pages, as figures."""
    sleep = sleep_ms / 1000
    run = loops.offset_loop(url, args.offset_page, sleep, args.offset_cap_seconds)
    return loops.offset_figures(run, args.offset_page, sleep)


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios against the targets."""
    single, bot, keyset = results["single"], results["bot_batch_step"], results["keyset"]
    offset, bare = results["offset_loop"], results["offset_loop_no_sleep"]
    batch_over_single = bot["seconds"] / single["seconds"]
    longest = bot["longest_batch_ms"]
    bot_over_offset = bot["rows_per_second"] / offset["rows_per_second"]
    return {
        "batch_over_single": rnd(batch_over_single),
        "batch_over_single_target_max": TARGET_BATCH_OVER_SINGLE,
        "batch_over_single_met": batch_over_single <= TARGET_BATCH_OVER_SINGLE,
        "keyset_over_single": rnd(keyset["seconds"] / single["seconds"]),
        "bot_longest_batch_ms": longest,
        "bot_longest_batch_ms_target_max": TARGET_LONGEST_BATCH_MS,
        "bot_longest_batch_met": longest is not None and longest <= TARGET_LONGEST_BATCH_MS,
        "bot_batches": bot["batches"],
        "bot_rows_per_second_over_offset_loop": rnd(bot_over_offset, 2),
        "bot_over_offset_target_min": TARGET_BOT_OVER_OFFSET,
        "bot_over_offset_met": bot_over_offset >= TARGET_BOT_OVER_OFFSET,
        "bot_rows_per_second_over_offset_loop_no_sleep": rnd(
            bot["rows_per_second"] / bare["rows_per_second"], 2
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements, in one scratch database."""
    load = os.getloadavg()
    with scratch_database("barq_bench_tc") as url:
        ways: dict[str, Callable[[], dict[str, Any]]] = {
            "single": lambda: loops.single_statement(url),
            "bot_batch_step": lambda: run_bot_step(url),
            "keyset": lambda: loops.keyset_loop(url, args.keyset_batch),
            "offset_loop": lambda: offset_run(url, args, args.offset_sleep_ms),
            "offset_loop_no_sleep": lambda: offset_run(url, args, 0.0),
        }
        results = {label: measure(url, args, label, way) for label, way in ways.items()}
    moving = results["single"]["source_rows_before"]
    return {
        "benchmark": "tenant_consolidation",
        "machine": machine(load),
        "dialect": "postgresql",
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
    try:
        emit(run(args))
    except Exception:
        logger.exception("tenant_consolidation: a measurement could not be taken")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
