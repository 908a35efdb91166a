"""The package's layers (docs/architecture.md, "Layers"): a module imports only
from its own layer or the ones below, lazily or not, and no two modules import
each other, however indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "session_lint"
# Lowest first; a module's layer is that of the longest prefix listed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("session_lint", "session_lint.finding", "session_lint.fingerprint", "session_lint.known"),
    ("session_lint.project",),
    ("session_lint.core",),
    ("session_lint.semantics",),
    ("session_lint.fixes", "session_lint.fixes.edits"),
    ("session_lint.rules",),
    ("session_lint.analyzer",),
    ("session_lint.fixes.apply", "session_lint.fixes.write"),
    ("session_lint.cli", "session_lint.cli.runner", "session_lint.cli.cache", "session_lint.output"),
    ("session_lint.editors",),
    ("session_lint.cli.main", "session_lint.__main__"),
)


def _modules() -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _imports(module: str) -> set[str]:
    """Every module of the package that ``module`` imports, anywhere in it."""
    path, is_package = MODULES[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def layer(module: str) -> int:
    best, length = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    assert best >= 0, f"{module} is in no layer"
    return best


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    upward = sorted(name for name in _imports(module) if layer(name) > layer(module))
    assert upward == [], f"{module} (layer {layer(module)}) imports upward"


def test_no_import_cycle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    # A module's package imports it (``rules/__init__`` lists every rule): the
    # package and its own modules are one node.
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(graph[module]):
            if _inside(target, module) or _inside(module, target):
                continue
            if seen.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])
    assert cycles == []


def _inside(module: str, package: str) -> bool:
    return module.startswith(package + ".") and MODULES[package][1]


def test_the_table_names_real_modules() -> None:
    for prefixes in LAYERS:
        for prefix in prefixes:
            directory = PACKAGE.parent.joinpath(*prefix.split("."))
            assert prefix in MODULES or directory.is_dir(), prefix
