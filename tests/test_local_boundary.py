"""The product (bot/ outside bot/local/, and handlers/) does not depend on the stand-in world
in bot/local/; only the CLI's console command reaches it, lazily."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [
    path
    for path in sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")])
    if "local" not in path.relative_to(ROOT).parts[:2]
]


def _local_imports(node: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            names = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.module:
            names = [f"{child.module}.{alias.name}" for alias in child.names]
        else:
            continue
        if any(name == "bot.local" or name.startswith("bot.local.") for name in names):
            found.append(child)
    return found


def test_the_product_imports_nothing_from_bot_local() -> None:
    """No product module imports bot.local, except bot/cli.py inside a function."""
    assert ROOT / "bot" / "app.py" in PRODUCT and ROOT / "bot" / "local" / "slack.py" not in PRODUCT
    offenders = []
    for path in PRODUCT:
        tree = ast.parse(path.read_text(), str(path))
        anywhere = _local_imports(tree)
        functions = (ast.FunctionDef, ast.AsyncFunctionDef)
        nested = {
            id(i) for f in ast.walk(tree) if isinstance(f, functions) for i in _local_imports(f)
        }
        top_level = [i for i in anywhere if id(i) not in nested]
        allowed_nested = path == ROOT / "bot" / "cli.py"
        if top_level or (anywhere and not allowed_nested):
            offenders.append(f"{path.relative_to(ROOT)}:{(top_level or anywhere)[0].lineno}")
    assert offenders == []
