"""Method files are built only from shared parts: they never import another method or a dataset module.

A helper two methods need lives in a shared layer (`nets`, `views`, `losses`, `data.base`) or, when it
is a whole piece of a method (a family's base class), in `methods.base`; a dataset's constant reaches a
method through the `DataSpec`. Read with `ast`, so the check costs no imports and sees imports inside
functions too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import selfsup.methods

METHODS_DIR = Path(selfsup.methods.__file__).parent
SHARED_METHOD_MODULES = {"__init__"}  # the package file; methods/base/ (the contract, family bases) is a folder
ALLOWED = (
    "selfsup.methods.base",
    "selfsup.nets",
    "selfsup.views",
    "selfsup.losses",
    "selfsup.data.base",
    # infrastructure every layer may use
    "selfsup.errors",
    "selfsup.distributed",
    "selfsup.utils",
)


def allowed(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED)


def imported_modules(source: str, package: str = "selfsup.methods") -> list[tuple[int, str]]:
    """(line, module) for every selfsup module the source imports; `from a import b` yields a.b where
    b is a module of the package (a method file), else a."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the methods package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                is_module = base == package and (METHODS_DIR / f"{alias.name}.py").exists()
                found.append((node.lineno, submodule if is_module or base == "selfsup" else base))
    return [(line, module) for line, module in found if module == "selfsup" or module.startswith("selfsup.")]


def violations(source: str) -> list[str]:
    return sorted({f"line {line}: {module}" for line, module in imported_modules(source) if not allowed(module)})


METHOD_FILES = sorted(p for p in METHODS_DIR.glob("*.py") if p.stem not in SHARED_METHOD_MODULES)
# The family bases are held to the same rule (the contract itself, base/__init__, also holds the registry).
FAMILY_FILES = sorted(p for p in (METHODS_DIR / "base").glob("*.py") if p.stem != "__init__")


def test_there_are_method_files_to_check() -> None:
    assert len(METHOD_FILES) >= 20


@pytest.mark.parametrize("path", METHOD_FILES + FAMILY_FILES, ids=lambda p: p.parent.name + "/" + p.stem)
def test_method_imports_only_shared_parts(path: Path) -> None:
    bad = violations(path.read_text())
    assert not bad, (f"{path.name} imports outside the shared layers ({', '.join(ALLOWED)}): {bad}. Move the "
                     f"helper to nets/, views/, losses/ or a family base in methods/base/; pass dataset constants via DataSpec.")


@pytest.mark.parametrize("source, ok", [
    ("from selfsup.methods.base import METHODS, Method", True),
    ("from selfsup.methods.base.two_view import TwoViewMethod", True),
    ("from selfsup.views.text import mask_tokens", True),
    ("from selfsup.nets import BlockEncoder", True),
    ("import selfsup.losses.adversarial", True),
    ("from selfsup.data.base import DataSpec", True),
    ("from selfsup.errors import SelfSupError", True),
    ("import torch", True),
    ("from selfsup.methods.mlm import mask_tokens", False),
    ("from selfsup.methods import mlm", False),
    ("from . import colorization", False),
    ("from .inpainting import Discriminator", False),
    ("from selfsup.data.sprites import PALETTE", False),
    ("from selfsup.data import sprites", False),
    ("from selfsup import data", False),
    ("from selfsup.text.tokenizer import PAD_ID", False),
    ("def f():\n    from selfsup.methods.temporal_order import first_frame_if_clip", False),
])
def test_the_check_itself(source: str, ok: bool) -> None:
    assert (not violations(source)) == ok
