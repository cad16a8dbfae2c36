"""Transform hooks of batch steps: ``file.py:function`` in the runbooks folder, pinned by the
sha256 of its file so that an approved plan runs exactly the code that was reviewed.

A hook gets each row of the batch as a dict of the step's ``read`` columns (named as the
runbook spells them) and returns None to leave the row alone, or a dict of new values for
some of its ``write`` columns; values are bound parameters, so return what the driver takes
(e.g. ``json.dumps`` for JSON text).

A row the hook must not guess at (its data is invalid, say) is left unchanged *with a reason*:
the hook raises ``bot.hooks.RowSkipped(reason)``. The runner writes nothing to that row and
records its key and the reason in the target's ``barq_skipped_rows`` table (run, step,
branch, key, reason) in the batch's own transaction, so the record is exactly once across
retries, pauses and restarts, like the checkpoint. The step's result says how many rows were
left so, with the first few keys and reasons (:func:`skipped_text`), and a runbook's check
can read the table (``WHERE migration_id = :migration_id AND step = '...'``) to tell rows
left for a reason from rows the step missed. The keyset cursor moves past a skipped row like
any other, so it is never selected again by the run. Any other exception fails the batch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Unicode,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.targets.batch_sql import KEY, RESERVED_PREFIX, hook_update_sql
from bot.adapters.targets.dialect import Dialect
from bot.domain.plan import BatchPlan
from bot.hooks import RowSkipped

__all__ = [
    "NONE_SKIPPED",
    "Hook",
    "Skipped",
    "apply_hook",
    "hook_digest",
    "load_hook",
    "prepare_skipped",
    "read_skipped",
    "skipped_rows",
    "skipped_text",
]

Hook = Callable[[dict[str, Any]], dict[str, Any] | None]
_module_ids = itertools.count(1)
REASON_CHARS = 400  # a longer reason is cut to this many characters when recorded
SHOWN = 5  # skipped rows named in a step's result

_skipped_md = MetaData()
skipped_rows = Table(
    "barq_skipped_rows",
    _skipped_md,
    Column("migration_id", String(64), primary_key=True, quote=False),
    Column("step", String(100), primary_key=True, quote=False),
    Column("branch", String(100), primary_key=True, quote=False),
    Column("row_key", BigInteger, primary_key=True, autoincrement=False, quote=False),
    Column("reason", Unicode(REASON_CHARS), nullable=False, quote=False),
    quote=False,
)


@dataclass(frozen=True)
class Skipped:
    """Rows a step's hook left unchanged: how many, and the first few (key, reason)."""

    count: int = 0
    first: tuple[tuple[int, str], ...] = ()

    def __add__(self, other: Skipped) -> Skipped:
        first = sorted((*self.first, *other.first))[:SHOWN]
        return Skipped(self.count + other.count, tuple(first))


NONE_SKIPPED = Skipped()


def _hook_file(runbooks_dir: Path, hook: str) -> tuple[Path, str]:
    file, _, function = hook.rpartition(":")
    base = runbooks_dir.resolve()
    path = (base / file).resolve()
    if not file.endswith(".py") or not function or not path.is_relative_to(base):
        raise ValueError(f"hook {hook!r} must be 'file.py:function' inside {runbooks_dir}")
    if not path.is_file():
        raise ValueError(f"hook file {file!r} not found in {runbooks_dir}")
    return path, function


def hook_digest(runbooks_dir: Path, hook: str) -> str:
    """sha256 of the file of ``hook`` ('file.py:function', relative to ``runbooks_dir``)."""
    path, _ = _hook_file(runbooks_dir, hook)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_hook(runbooks_dir: Path, plan: BatchPlan) -> Hook:
    """Import ``plan.hook`` from its file, refusing it when the file no longer matches the
    digest the plan was approved with. The bytes checked are the bytes executed."""
    if plan.hook is None:
        raise ValueError(f"the batch step on {plan.table} has no hook")
    path, function = _hook_file(runbooks_dir, plan.hook)
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    if plan.hook_digest and digest != plan.hook_digest:
        raise ValueError(
            f"hook file {path.name} changed since the plan was approved (sha256 {digest[:12]}, "
            f"approved {plan.hook_digest[:12]}): plan the migration again and get it approved"
        )
    name = f"barq_hook_{digest[:16]}_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ValueError(f"cannot load hook file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    exec(compile(source, str(path), "exec"), module.__dict__)
    found = getattr(module, function, None)
    if not callable(found):
        raise ValueError(f"hook file {path.name} has no function {function!r}")
    hook: Hook = found
    return hook


def apply_hook(
    conn: Connection,
    dialect: Dialect,
    plan: BatchPlan,
    hook: Hook,
    rows: Iterable[Sequence[Any]],
    run: Mapping[str, str],
) -> int:
    """Call ``hook`` on each (key, *read columns) row and write what it returns, one
    executemany per set of columns; record the rows it skipped (RowSkipped) under ``run``
    (migration_id, step, branch); return how many rows were written."""
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    skipped: list[dict[str, Any]] = []
    for key, *values in rows:
        try:
            changed = hook(dict(zip(plan.read, values, strict=True)))
        except RowSkipped as skip:
            skipped.append({**run, "row_key": key, "reason": _clipped(skip.reason)})
            continue
        if changed is None:
            continue
        if not isinstance(changed, dict):
            raise TypeError(f"hook {plan.hook} returned {changed!r}: want a dict or None")
        extra = sorted(set(changed) - set(plan.write))
        if extra:
            raise ValueError(
                f"hook {plan.hook} returned {', '.join(map(repr, extra))} for {plan.key}="
                f"{key}, but the step may only write {', '.join(plan.write)}"
            )
        columns = tuple(c for c in plan.write if c in changed)
        if columns:
            binds = {f"{RESERVED_PREFIX}w{plan.write.index(c)}": changed[c] for c in columns}
            updates.setdefault(columns, []).append({**binds, KEY: key})
    for columns, params in updates.items():
        conn.execute(text(hook_update_sql(dialect, plan, columns)), params)
    if skipped:
        conn.execute(skipped_rows.insert(), skipped)
    return sum(len(params) for params in updates.values())


def prepare_skipped(engine: Engine) -> None:
    """Create ``barq_skipped_rows`` in the target unless it exists (a runner of another
    branch may create it at the same moment: that is no error)."""
    try:
        with engine.begin() as conn:
            skipped_rows.create(conn, checkfirst=True)
    except SQLAlchemyError:
        if not inspect(engine).has_table(skipped_rows.name):
            raise


def read_skipped(conn: Connection, run: Mapping[str, str]) -> Skipped:
    """The rows recorded as skipped under ``run`` (migration_id, step, branch)."""
    t = skipped_rows
    where = (t.c.migration_id == run["migration_id"]) & (t.c.step == run["step"])
    where &= t.c.branch == run["branch"]
    count = conn.execute(select(func.count()).select_from(t).where(where)).scalar_one()
    if not count:
        return Skipped()
    first = conn.execute(
        select(t.c.row_key, t.c.reason).where(where).order_by(t.c.row_key).limit(SHOWN)
    )
    return Skipped(int(count), tuple((int(k), str(r)) for k, r in first))


def skipped_text(skipped: Skipped, key: str) -> str:
    """The step result's words on rows left unchanged for a reason ('' when none was):
    "2 rows left unchanged, for the reasons given: Id 17: …; Id 40: …"."""
    if not skipped.count:
        return ""
    one = skipped.count == 1
    rows, reasons = ("row", "reason") if one else ("rows", "reasons")
    shown = "; ".join(f"{key} {k}: {reason}" for k, reason in skipped.first)
    more = skipped.count - len(skipped.first)
    return f"{skipped.count:,} {rows} left unchanged, for the {reasons} given: {shown}" + (
        f"; and {more:,} more (all in {skipped_rows.name})" if more > 0 else ""
    )


def _clipped(reason: str) -> str:
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
