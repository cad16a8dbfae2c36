"""Loading runbooks from YAML files (and the SQL files they name), and the library that
reloads them when their files change."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.adapters.targets.batch_hooks import hook_digest
from bot.domain.runbook import Runbook
from bot.errors import RunbookError

logger = logging.getLogger(__name__)

_SQL_KEYS = ("sql", "count", "equals", "exists")
_KEPT = "; fix the file to plan it again: until then the bot keeps the version it last loaded,"
_KEPT += " for requests made before the edit"

Fingerprint = frozenset[tuple[str, int, int, int, int]]


def load_runbooks(directory: Path) -> dict[str, Runbook]:
    """Every ``*.yaml`` runbook in ``directory`` by name; the first bad one raises RunbookError."""
    found, problems = _load_each(directory)
    if problems:
        raise next(iter(problems.values()))
    return found


def _load_each(directory: Path) -> tuple[dict[str, Runbook], dict[str, RunbookError]]:
    """The runbooks of ``directory`` that load, and why the others do not (by file stem, in
    file order); raises RunbookError only when the directory is missing."""
    if not directory.is_dir():
        raise RunbookError(str(directory), "", "the runbooks directory does not exist")
    found: dict[str, Runbook] = {}
    problems: dict[str, RunbookError] = {}
    for path in sorted(directory.glob("*.y*ml")):
        try:
            runbook = load_runbook(path)
            if runbook.name in found:
                raise RunbookError(str(path), "name", f"{runbook.name!r} is already defined")
        except RunbookError as exc:
            problems.setdefault(path.stem, exc)
            continue
        found[runbook.name] = runbook
    return found, problems


class RunbookLibrary:
    """The runbooks of a directory, reloaded when its files change.

    A use looks at the directory at most every ``interval`` seconds, cheaply: the names,
    sizes, times and inodes of its files, contents unread. When any changed, every runbook is
    loaded again. A runbook whose file no longer loads keeps its last good version, and the
    error is logged once and kept (``problem``) until the file is fixed; a runbook whose file
    is gone is gone. At start-up (the constructor) a bad runbook raises RunbookError, as before.
    Safe to use from several threads."""

    def __init__(
        self,
        directory: Path,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = _fingerprint(directory)  # before loading: an edit meanwhile is seen next
        self._runbooks = load_runbooks(directory)
        self._problems: dict[str, RunbookError] = {}
        self._checked = clock()

    def get(self, name: str) -> Runbook | None:
        """The runbook ``name`` as last loaded well, or None if there is none."""
        return self._current()[0].get(name)

    def all(self) -> list[Runbook]:
        """Every runbook, by name."""
        runbooks = self._current()[0]
        return [runbooks[name] for name in sorted(runbooks)]

    def problem(self, name: str) -> RunbookError | None:
        """Why the file of ``name`` does not load now, if it does not."""
        return self._current()[1].get(name)

    def _current(self) -> tuple[dict[str, Runbook], dict[str, RunbookError]]:
        with self._lock:
            now = self._clock()
            if now - self._checked >= self.interval:
                self._checked = now
                seen = _fingerprint(self.directory)
                if seen != self._seen:
                    self._seen = seen
                    self._reload()
            return self._runbooks, self._problems

    def _reload(self) -> None:
        try:
            found, problems = _load_each(self.directory)
        except RunbookError as exc:
            logger.error(
                "runbooks not reloaded, keeping the %d loaded: %s", len(self._runbooks), exc
            )
            return
        for name, error in problems.items():
            if name in self._runbooks and name not in found:
                found[name] = self._runbooks[name]
                problems[name] = RunbookError(error.file, error.field, error.reason + _KEPT)
            if str(self._problems.get(name)) != str(problems[name]):
                logger.error("runbook file is invalid: %s", problems[name])
        for name, runbook in found.items():
            old = self._runbooks.get(name)
            if old is None or old.digest != runbook.digest:
                logger.info("runbook %s %s", name, "reloaded" if old else "added")
        for name in self._runbooks.keys() - found.keys():
            logger.info("runbook %s removed", name)
        self._runbooks, self._problems = found, problems


def _fingerprint(directory: Path) -> Fingerprint:
    """Path, size, modification and change times, and inode of each file under
    ``directory`` (hooks' ``__pycache__`` and hidden entries aside)."""
    found: set[tuple[str, int, int, int, int]] = set()
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:  # removed while we looked: the next look sees it gone
                continue
            found.add((path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return frozenset(found)


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
