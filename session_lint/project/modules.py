"""Module names of a project's files, and relative imports made absolute."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["absolute_import", "imports_of", "module_name", "module_sources"]


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
