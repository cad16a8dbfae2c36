"""The shape of the code: the domain imports nothing outside it (but the error tree), and no
imports run in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")])


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, typing_only: bool) -> set[str]:
    """Modules imported anywhere in the file (in functions too), as absolute names; those
    under ``if TYPE_CHECKING:`` only when ``typing_only``."""
    here = _module(path)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped and not typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


GRAPH = {_module(path): _imports(path, typing_only=False) for path in FILES}


def test_the_domain_imports_only_the_domain_and_the_error_tree() -> None:
    """bot/domain is pure: stdlib, pydantic, itself and bot.errors (a leaf of plain
    exception classes), nothing of the adapters, the engine or the service, not even for
    type checking."""
    offenders = {
        _module(path): sorted(
            name
            for name in _imports(path, typing_only=True)
            if name.split(".")[0] in ("bot", "handlers")
            and not name.startswith(("bot.domain", "bot.errors"))
        )
        for path in FILES
        if _module(path).startswith("bot.domain")
    }
    assert {m: names for m, names in offenders.items() if names} == {}
    assert "bot.domain.plan" in offenders, "the walk found the domain"


def test_no_module_level_imports_run_in_a_circle() -> None:
    """Following imports between the project's modules (those inside functions too, which
    only hide a circle) never comes back to where it started."""
    edges = {m: {d for d in deps if d in GRAPH and d != m} for m, deps in GRAPH.items()}
    visiting: list[str] = []
    done: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        visiting.append(module)
        for dep in sorted(edges[module]):
            if dep in visiting:
                circles.append([*visiting[visiting.index(dep) :], dep])
            elif dep not in done:
                visit(dep)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module)
    assert circles == []
    assert "bot.adapters.targets.mssql" in edges["bot.adapters.targets.dialects"]


def test_the_use_cases_and_the_engine_depend_on_ports_not_adapters() -> None:
    """bot/service.py and bot/engine.py reach the outside world only through the ports:
    no adapter, executor, driver, Slack or scheduler import."""
    outside = ("bot.adapters", "bot.executors", "bot.local", "sqlalchemy", "slack", "apscheduler")
    found = {
        module: sorted(name for name in GRAPH[module] if name.startswith(outside))
        for module in ("bot.service", "bot.engine")
    }
    assert found == {"bot.service": [], "bot.engine": []}
