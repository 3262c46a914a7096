"""The package's imports point one way: each subpackage imports only from itself and those before it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import lrf_optuna as lo

PACKAGE = Path(lo.__file__).parent
# the data flow, first to last (docs/architecture.md)
LAYERS = (
    "data",
    "core",
    "factorizers",
    "layers",
    "model",
    "files",
    "similarity",
    "runtime",
    "search",
    "results",
    "cli",
)
SUBPACKAGES = ("core", "factorizers", "model", "files", "similarity", "runtime", "search", "results", "cli")


def _layer(module: str) -> str:
    """'lrf_optuna.model._graph' -> 'model'."""
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported lrf_optuna module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    type_checking = {
        id(child)
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lrf_optuna."):
            names = [node.module] if node.module.count(".") else [f"lrf_optuna.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "lrf_optuna":
            names = [f"lrf_optuna.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("lrf_optuna.")]
        else:
            continue
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (".".join(("lrf_optuna", *path.relative_to(PACKAGE).with_suffix("").parts)), path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent != PACKAGE
    ]


def test_every_module_belongs_to_a_layer():
    assert {_layer(name) for name, _ in _modules()} == set(LAYERS)


def test_imports_point_one_way():
    upward = [
        f"{name}:{line} imports {imported}"
        for name, path in _modules()
        for imported, line, _ in _imports(path)
        if LAYERS.index(_layer(imported)) > LAYERS.index(_layer(name))
    ]
    assert upward == []


def test_an_upward_import_is_caught():
    # the check itself can fail: a model module importing the search would be reported
    fake = PACKAGE.parent / "fake_upward.py"
    try:
        fake.write_text("def f():\n    from lrf_optuna.search._run import run_study\n")
        assert _imports(fake) == [("lrf_optuna.search._run", 2, False)]
        assert LAYERS.index(_layer("lrf_optuna.search._run")) > LAYERS.index("model")
    finally:
        fake.unlink()


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_exports_what_its_all_lists(package):
    module = importlib.import_module(f"lrf_optuna.{package}")
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n[0].islower(), n))
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    private = [name for name in module.__all__ if name.startswith("_")]
    assert private == []


def test_the_top_level_is_small():
    callables = [name for name in lo.__all__ if name != "__version__" and name not in LAYERS]
    assert len(callables) == 16, callables
    assert {name for name in lo.__all__ if name in LAYERS} == set(LAYERS)
