"""The reference ways to move a tenant that the bot's batch step is compared with: one
UPDATE statement, a hand-written keyset loop, and the runbook's C# offset loop (Skip/Take,
SaveChanges per page, ``Task.Delay(100)``) translated to SQLAlchemy. Not run by itself."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench._common import SOURCE_TENANT, TARGET_TENANT, rnd

_TENANTS = {"source": SOURCE_TENANT, "target": TARGET_TENANT}


def single_statement(url: str) -> dict[str, Any]:
    """``UPDATE Tasks SET TenantId = :target WHERE TenantId = :source`` in one transaction."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        started = time.perf_counter()
        with engine.begin() as conn:
            result = conn.execute(
                text("UPDATE Tasks SET TenantId = :target WHERE TenantId = :source"), _TENANTS
            )
            rows = result.rowcount
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {"seconds": rnd(seconds), "rows": rows, "rows_per_second": rnd(rows / seconds, 0)}


_KEYSET_BOUNDARY = text(
    "SELECT MAX(Id) FROM (SELECT Id FROM Tasks WHERE TenantId = :source AND Id > :last"
    " ORDER BY Id LIMIT :size) AS page"
)
_KEYSET_UPDATE = text(
    "UPDATE Tasks SET TenantId = :target WHERE Id > :last AND Id <= :upper AND TenantId = :source"
)


def keyset_loop(url: str, size: int) -> dict[str, Any]:
    """Fixed-size keyset batches: boundary by Id with LIMIT, UPDATE the range, commit."""
    engine = create_engine(url, poolclass=NullPool)
    rows, batches, longest, last = 0, 0, 0.0, 0
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            while True:
                began = time.perf_counter()
                with conn.begin():
                    upper = conn.execute(
                        _KEYSET_BOUNDARY, {**_TENANTS, "last": last, "size": size}
                    ).scalar()
                    if upper is None:
                        break
                    params = {**_TENANTS, "last": last, "upper": upper}
                    rows += conn.execute(_KEYSET_UPDATE, params).rowcount
                longest = max(longest, time.perf_counter() - began)
                batches, last = batches + 1, upper
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "seconds": rnd(seconds),
        "rows": rows,
        "batches": batches,
        "batch_size": size,
        "longest_batch_ms": rnd(longest * 1000, 1),
        "rows_per_second": rnd(rows / seconds, 0),
    }


@dataclass
class OffsetRun:
    """What the offset loop got through before it finished or hit its time cap."""

    page_ends: list[float] = field(default_factory=list)  # seconds since start, per page
    page_query_ms: list[float] = field(default_factory=list)
    rows_moved: int = 0
    finished: bool = False
    seconds: float = 0.0


_OFFSET_PAGE = text("SELECT Id, TenantId FROM Tasks ORDER BY Id LIMIT :take OFFSET :skip")
_OFFSET_SAVE = text("UPDATE Tasks SET TenantId = :target WHERE Id = :id")


def offset_loop(url: str, page: int, sleep_seconds: float, cap_seconds: float) -> OffsetRun:
    """The runbook's loop: ``Skip(offset).Take(page)`` over the table ordered by Id, change the
    page's matching rows, ``SaveChanges`` (one UPDATE per changed row, one commit per page),
    sleep, ``offset += page``; stop when a page comes back empty or at the time cap."""
    engine = create_engine(url, poolclass=NullPool)
    run = OffsetRun()
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            offset = 0
            while time.perf_counter() - started < cap_seconds:
                if not _offset_page(conn, offset, page, run):
                    run.finished = True
                    break
                run.page_ends.append(time.perf_counter() - started)
                offset += page
                time.sleep(sleep_seconds)
        run.seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return run


def _offset_page(conn: Any, offset: int, page: int, run: OffsetRun) -> bool:
    """One Skip/Take page and its SaveChanges; False when the page is empty."""
    with conn.begin():
        began = time.perf_counter()
        found = conn.execute(_OFFSET_PAGE, {"take": page, "skip": offset}).all()
        run.page_query_ms.append((time.perf_counter() - began) * 1000)
        if not found:
            return False
        changed = [
            {"id": key, "target": TARGET_TENANT} for key, tenant in found if tenant == SOURCE_TENANT
        ]
        if changed:
            conn.execute(_OFFSET_SAVE, changed)
            run.rows_moved += len(changed)
    return True


def offset_figures(run: OffsetRun, page: int, sleep_seconds: float) -> dict[str, Any]:
    """Rows per second over the finished part, and pages per second early vs late."""
    pages = len(run.page_ends)
    window = max(run.seconds / 10, 1e-9)
    early = sum(1 for t in run.page_ends if t <= window) / window
    late = sum(1 for t in run.page_ends if t > run.seconds - window) / window
    head, tail = run.page_query_ms[:20], run.page_query_ms[-20:]
    return {
        "seconds": rnd(run.seconds),
        "finished": run.finished,
        "pages": pages,
        "page_size": page,
        "sleep_ms_per_page": rnd(sleep_seconds * 1000, 0),
        "rows_moved": run.rows_moved,
        "rows_per_second": rnd(run.rows_moved / run.seconds, 0) if run.seconds else 0.0,
        "pages_per_second_first_tenth": rnd(early, 2),
        "pages_per_second_last_tenth": rnd(late, 2),
        "page_query_ms_first_20": rnd(sum(head) / len(head), 1) if head else None,
        "page_query_ms_last_20": rnd(sum(tail) / len(tail), 1) if tail else None,
        "last_offset": (pages - 1) * page if pages else 0,
    }
