"""Module names of a project's files, and relative imports made absolute."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "absolute_import",
    "child_nodes",
    "import_statements",
    "imports_of",
    "module_name",
    "module_sources",
    "walk",
]


def module_name(relative: str) -> str | None:
    """``app/db/session.py`` -> ``app.db.session``; ``src/`` is a layout, not a package."""
    if not relative.endswith((".py", ".pyi")):
        return None
    parts = relative.replace("\\", "/").rsplit(".", 1)[0].split("/")
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def absolute_import(module: str, current: str, is_package: bool) -> str:
    """``..db`` seen from ``app.api.users`` -> ``app.db``."""
    dots = len(module) - len(module.lstrip("."))
    if not dots:
        return module
    base = current.split(".") if current else []
    if not is_package:
        base = base[:-1]
    if dots > 1:
        base = base[: len(base) - (dots - 1)] if dots - 1 <= len(base) else []
    rest = module[dots:]
    return ".".join([*base, rest] if rest else base)


def imports_of(
    nodes: list[ast.Import | ast.ImportFrom], name: str, is_package: bool
) -> dict[str, str]:
    """Every import of the file, lazy ones in functions included (one namespace:
    the index is a heuristic over a whole file, the linter resolves per scope)."""
    out: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            source = absolute_import("." * node.level + (node.module or ""), name, is_package)
            for alias in node.names:
                out[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    head = alias.name.split(".", 1)[0]
                    out[head] = head
    return out


def module_sources(files: Iterable[tuple[str, Path]]) -> Iterator[tuple[str, str, bytes]]:
    """(relative path, module name, bytes) of the project files that are modules
    and can be read."""
    for relative, path in files:
        name = module_name(relative)
        if name is None:
            continue
        try:
            yield relative, name, path.read_bytes()
        except OSError:
            continue


# -- walking ``ast`` trees ------------------------------------------------------------
# ``ast.walk`` and ``ast.iter_child_nodes`` go through a generator of (name, value)
# pairs per node and test every field value; on a large project the index's walks
# cost more than its parse (docs/architecture.md, "Large trees"). These give the
# same nodes in the same order from per-type field lists, skipping the fields that
# only ever hold a name, a number or a flag, and those that hold an expression's
# context (``Load``, ``Store``) or an operator (``Add``, ``Eq``): no reader looks
# for those nodes (they read ``node.ctx`` and ``node.op`` where they care), and a
# context is a third of the nodes of a typical function.
_SCALAR_FIELDS = frozenset(
    {"id", "arg", "attr", "name", "module", "level", "kind", "type_comment", "is_async",
     "conversion", "simple", "tag", "ctx", "op", "ops"}
)  # fmt: skip
_NODE_FIELDS: dict[type, tuple[str, ...]] = {}
# Fields that hold statements (or handlers and match cases, which hold statements).
_STATEMENT_FIELDS = ("body", "handlers", "orelse", "finalbody", "cases")
_BLOCK_FIELDS: dict[type, tuple[str, ...]] = {}


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """``list(ast.iter_child_nodes(node))`` less contexts and operators, faster."""
    kind = type(node)
    names = _NODE_FIELDS.get(kind)
    if names is None:
        names = _NODE_FIELDS[kind] = tuple(f for f in kind._fields if f not in _SCALAR_FIELDS)
    out: list[ast.AST] = []
    for name in names:
        value = getattr(node, name, None)
        if type(value) is list:
            out.extend(item for item in value if isinstance(item, ast.AST))
        elif isinstance(value, ast.AST):
            out.append(value)
    return out


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk(node)``: the same nodes (less contexts and operators) in the same
    (breadth-first) order."""
    todo = deque([node])
    while todo:
        current = todo.popleft()
        todo.extend(child_nodes(current))
        yield current


def import_statements(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The ``import`` statements anywhere in ``tree``, in ``ast.walk`` order, found
    by walking statements only: expressions never hold a statement."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo = deque([tree])
    while todo:
        current = todo.popleft()
        if isinstance(current, (ast.Import, ast.ImportFrom)):
            out.append(current)
            continue
        kind = type(current)
        names = _BLOCK_FIELDS.get(kind)
        if names is None:
            names = _BLOCK_FIELDS[kind] = tuple(f for f in kind._fields if f in _STATEMENT_FIELDS)
        for name in names:
            value = getattr(current, name, None)
            if type(value) is list:
                todo.extend(value)
    return out
