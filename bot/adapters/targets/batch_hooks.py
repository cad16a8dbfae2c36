"""Transform hooks of batch steps: ``file.py:function`` in the runbooks folder, pinned by the
sha256 of its file so that an approved plan runs exactly the code that was reviewed.

A hook gets each row of the batch as a dict of the step's ``read`` columns (named as the
runbook spells them) and returns None to leave the row alone, or a dict of new values for
some of its ``write`` columns; values are bound parameters, so return what the driver takes
(e.g. ``json.dumps`` for JSON text).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from bot.adapters.targets.batch_sql import KEY, RESERVED_PREFIX, hook_update_sql
from bot.adapters.targets.dialect import Dialect
from bot.domain.plan import BatchPlan

__all__ = ["Hook", "apply_hook", "hook_digest", "load_hook"]

Hook = Callable[[dict[str, Any]], dict[str, Any] | None]
_module_ids = itertools.count(1)


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
) -> int:
    """Call ``hook`` on each (key, *read columns) row and write what it returns, one
    executemany per set of columns; return how many rows were written."""
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key, *values in rows:
        changed = hook(dict(zip(plan.read, values, strict=True)))
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
    return sum(len(params) for params in updates.values())
