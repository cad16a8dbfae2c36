"""Shared helpers for the benchmarks: scratch PostgreSQL databases, fresh Tasks data, JSON
output on stdout and logs on stderr."""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from bot.local import demo
from bot.local.barq_schema import load_tasks_bulk

ADMIN_URL = os.environ.get(
    "BARQ_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SOURCE_TENANT = 1
TARGET_TENANT = 2

logger = logging.getLogger("bench")


class MeasurementError(RuntimeError):
    """Raised when a figure could not be measured (the script then exits non-zero)."""


def setup_logging() -> None:
    """Logs go to stderr, so stdout carries the JSON figures only."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def bot_config(
    workdir: Path, target_url: str, name: str, runbook: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    """A runbooks directory in ``workdir`` holding ``runbook`` as ``name``, and the bot's
    settings that use it: ``target_url`` as staging (one approval from @dba-team), the demo's
    channels, and ``settings``."""
    runbooks = workdir / "runbooks"
    runbooks.mkdir()
    (runbooks / f"{name}.yaml").write_text(yaml.safe_dump(runbook, sort_keys=False))
    return {
        "targets": {
            "staging": {
                "url": target_url,
                "approval": {"approver_groups": ["S0DBA"], "required": 1},
            }
        },
        "approvals_channel": demo.APPROVALS,
        "notify_channel": demo.MIGRATIONS,
        "runbooks_dir": str(runbooks),
        **settings,
    }


def print_figures(name: str, figures: Callable[[], dict[str, Any]]) -> int:
    """Print what ``figures()`` measures as JSON; 1 (logged) if it could not be measured."""
    try:
        emit(figures())
    except Exception:
        logger.exception("%s: a measurement could not be taken", name)
        return 1
    return 0


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as one JSON document on stdout."""
    print(json.dumps(figures, indent=2, sort_keys=False))
    sys.stdout.flush()


def machine(started_load: tuple[float, float, float]) -> dict[str, Any]:
    """The CPU count and the 1-minute load average at the start and the end of the run: a
    high load at the start means something else was running and the figures are suspect."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_1min_start": rnd(started_load[0], 2),
        "loadavg_1min_end": rnd(os.getloadavg()[0], 2),
    }


def admin_engine() -> Engine:
    """AUTOCOMMIT engine on the maintenance database, for CREATE/DROP DATABASE."""
    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named PostgreSQL database; yield its URL; drop it (WITH FORCE)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    logger.info("created database %s", name)
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        logger.info("dropped database %s", name)


def fresh_tasks(url: str, rows: int, tenants: int) -> float:
    """Reload Tasks with ``rows`` identical rows, vacuum it and checkpoint; return seconds.

    The VACUUM makes the table look like a settled production table (visibility map set,
    hint bits written) and the CHECKPOINT keeps the load's dirty pages from being flushed
    during the measurement that follows.
    """
    started = time.perf_counter()
    engine = create_engine(url, poolclass=NullPool)
    try:
        load_tasks_bulk(engine, rows, tenants=tenants)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE Tasks"))
            conn.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()
    took = time.perf_counter() - started
    logger.info("loaded %d rows over %d tenant(s) in %.1f s", rows, tenants, took)
    return took


def checkpoints(url: str) -> int:
    """Checkpoints the server has started so far (timed + requested; server-wide). A
    measurement that spans one pays for flushing the dirty pages and for full-page writes."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def tenant_counts(url: str) -> dict[int, int]:
    """Rows per TenantId in Tasks."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            result = conn.execute(text("SELECT TenantId, COUNT(*) FROM Tasks GROUP BY TenantId"))
            return {int(tenant): int(count) for tenant, count in result}
    finally:
        engine.dispose()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        raise MeasurementError("no values to take a percentile of")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def rnd(value: float, digits: int = 3) -> float:
    """Round for display."""
    return round(value, digits)
