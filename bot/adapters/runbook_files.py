"""Loading runbooks from YAML files (and the SQL files they name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.adapters.targets.batch_hooks import hook_digest
from bot.domain.runbook import Runbook
from bot.errors import RunbookError

_SQL_KEYS = ("sql", "count", "equals", "exists")


def load_runbooks(directory: Path) -> dict[str, Runbook]:
    """Every ``*.yaml`` runbook in ``directory`` by name; the first bad one raises RunbookError."""
    if not directory.is_dir():
        raise RunbookError(str(directory), "", "the runbooks directory does not exist")
    found: dict[str, Runbook] = {}
    for path in sorted(directory.glob("*.y*ml")):
        runbook = load_runbook(path)
        if runbook.name in found:
            raise RunbookError(str(path), "name", f"{runbook.name!r} is already defined")
        found[runbook.name] = runbook
    return found


def load_runbook(path: Path) -> Runbook:
    """Parse and validate one runbook file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RunbookError(str(path), "", f"cannot read it as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RunbookError(str(path), "", "a runbook is a YAML mapping with name, steps, ...")
    if raw.get("name") != path.stem:
        raise RunbookError(str(path), "name", f"must be the file's name {path.stem!r}")
    _inline_sql_files(raw, path.parent, str(path))
    _digest_hooks(raw, path.parent, str(path))
    try:
        return Runbook.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise RunbookError(str(path), field, f"{err['msg']}{more}") from exc


def _inline_sql_files(node: Any, base: Path, file: str) -> None:
    """Replace ``{file: x.sql}`` SQL references with the file's text, recursively."""
    if isinstance(node, list):
        for item in node:
            _inline_sql_files(item, base, file)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _SQL_KEYS and isinstance(value, dict) and set(value) == {"file"}:
                node[key] = _read_sql(base / value["file"], file, key)
            elif key in _SQL_KEYS and isinstance(value, dict):
                for dialect, text in value.items():
                    if isinstance(text, dict) and set(text) == {"file"}:
                        value[dialect] = _read_sql(base / text["file"], file, key)
            else:
                _inline_sql_files(value, base, file)


def _digest_hooks(node: Any, base: Path, file: str) -> None:
    """Stamp each transform hook with its file's sha256, so the plan hash covers its code."""
    if isinstance(node, list):
        for item in node:
            _digest_hooks(item, base, file)
    elif isinstance(node, dict):
        transform = node.get("transform")
        if isinstance(transform, dict) and isinstance(transform.get("hook"), str):
            try:
                transform["digest"] = hook_digest(base, transform["hook"])
            except (OSError, ValueError) as exc:
                raise RunbookError(file, "transform.hook", str(exc)) from exc
        for value in node.values():
            _digest_hooks(value, base, file)


def _read_sql(path: Path, file: str, key: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise RunbookError(file, key, f"cannot read SQL file {path}: {exc.strerror}") from exc
