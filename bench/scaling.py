"""Scaling of the bot's batch step on PostgreSQL: the same tenant move as
bench.tenant_consolidation (``run_batches`` with default BatchSettings over a BARQ Tasks table
whose moved tenant holds all rows by default) at ``--rows`` (1M) and ``--large-rows`` (2M) rows
in one run. Each size runs in a fresh child process (this script re-invoked with ``--child``)
on freshly loaded, vacuumed data, so the child's peak memory (``ru_maxrss`` and ``VmHWM``, the
RSS high-water mark) belongs to that size alone. Prints JSON: seconds for each size and their
ratio (target: the large size takes at most 2.2x the small one), the peak RSS for each and its
difference (target: at most +50 MB from 1M to 2M rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

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

TARGET_TIME_RATIO = 2.2
TARGET_RSS_GROWTH_MB = 50.0
CHILD_TIMEOUT_SECONDS = 1800
CHILD_URL = "BARQ_BENCH_CHILD_URL"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling")
    parser.add_argument("--rows", type=int, default=1_000_000, help="the small size")
    parser.add_argument("--large-rows", type=int, default=2_000_000, help="the large size")
    parser.add_argument(
        "--tenants", type=int, default=1, help="tenants the rows cycle over (1: all rows move)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- child


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in kB, if available."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _mb(kb: int | None) -> float | None:
    return None if kb is None else rnd(kb / 1024, 1)


def child(url: str) -> dict[str, Any]:
    """Run the bot's batch step once in this process; report it and this process's memory."""
    from bench._botstep import run_bot_step  # imported here so the baseline includes it

    baseline = _status_kb("VmRSS")
    figures = run_bot_step(url)
    figures["rss_before_step_mb"] = _mb(baseline)
    figures["peak_rss_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    figures["vm_hwm_mb"] = _mb(_status_kb("VmHWM"))
    return figures


# --------------------------------------------------------------------------- parent


def run_child(url: str) -> dict[str, Any]:
    """Re-invoke this script with ``--child`` and read the JSON it prints."""
    command = [sys.executable, "-m", "bench.scaling", "--child"]
    env = {**os.environ, CHILD_URL: url}  # not on the command line: a URL may hold a password
    done = subprocess.run(
        command, stdout=subprocess.PIPE, env=env, timeout=CHILD_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        raise MeasurementError(f"the child process exited with {done.returncode}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def measure(url: str, rows: int, tenants: int) -> dict[str, Any]:
    """Fresh data of ``rows`` rows, then the bot's batch step in a fresh child process."""
    fresh_tasks(url, rows, tenants)
    moving = tenant_counts(url).get(SOURCE_TENANT, 0)
    logger.info("measuring the batch step over %d rows (%d move)", rows, moving)
    started_checkpoints = checkpoints(url)
    figures = run_child(url)
    figures["server_checkpoints_during"] = checkpoints(url) - started_checkpoints
    after = tenant_counts(url)
    if after.get(SOURCE_TENANT, 0) != 0 or after.get(TARGET_TENANT, 0) != moving:
        raise MeasurementError(f"{rows} rows: the step did not move all {moving} rows: {after}")
    logger.info("%d rows: %s", rows, figures)
    return {"rows": rows, "moved_rows": moving, **figures}


def summary(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the targets."""
    ratio = large["seconds"] / small["seconds"]
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    return {
        "seconds_ratio_large_over_small": rnd(ratio),
        "rows_ratio_large_over_small": rnd(large["rows"] / small["rows"]),
        "seconds_ratio_target_max": TARGET_TIME_RATIO,
        "seconds_ratio_met": ratio <= TARGET_TIME_RATIO,
        "peak_rss_growth_mb": rnd(growth, 1),
        "peak_rss_growth_target_max_mb": TARGET_RSS_GROWTH_MB,
        "peak_rss_growth_met": growth <= TARGET_RSS_GROWTH_MB,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both sizes, one after the other, in one scratch database."""
    load = os.getloadavg()
    with scratch_database("barq_bench_scale") as url:
        small = measure(url, args.rows, args.tenants)
        large = measure(url, args.large_rows, args.tenants)
    return {
        "benchmark": "scaling",
        "machine": machine(load),
        "dialect": "postgresql",
        "tenants": args.tenants,
        "moved_tenant": f"{SOURCE_TENANT} -> {TARGET_TENANT}",
        "small": small,
        "large": large,
        "summary": summary(small, large),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one measurement); exit 1 on failure."""
    setup_logging()
    args = parse_args(argv)
    return print_figures(
        "scaling", lambda: child(os.environ[CHILD_URL]) if args.child else run(args)
    )


if __name__ == "__main__":
    sys.exit(main())
