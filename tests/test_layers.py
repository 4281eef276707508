"""Imports run down the layers: nothing below the API imports it (or the CLI, report, demo or benches)."""
import ast
from pathlib import Path

import selfsup

PACKAGE = Path(selfsup.__file__).parent
TOP = {"selfsup", "selfsup.api", "selfsup.cli", "selfsup.report", "selfsup.demo", "selfsup.bench", "selfsup.claims",
       "selfsup.export", "selfsup.advise", "selfsup.recipes"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def is_top(name: str) -> bool:
    return any(name == t or (t != "selfsup" and name.startswith(t + ".")) for t in TOP)


def test_no_lower_layer_imports_the_api_or_what_sits_on_it():
    upward = [(module_name(p), name) for p in sorted(PACKAGE.rglob("*.py")) if not is_top(module_name(p))
              for name in imported(p) if is_top(name)]
    assert upward == []
