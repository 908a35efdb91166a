"""Reading option mappings: ``{"key": value}`` literals, ``dict(key=value)`` calls
and keyword arguments, the three shapes ``execution_options``, ``connect_args``
and ``server_settings`` take in real code; and the statement an expression is.
Editing them is ``session_lint.fixes.edits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope

_MAX_DEPTH = 4


@dataclass(frozen=True, eq=False)
class Entry:
    key: str
    key_node: cst.CSTNode  # the string key, or the keyword name of a dict() call
    value: cst.BaseExpression
    element: cst.DictElement | cst.Arg


@dataclass(frozen=True, eq=False)
class Mapping:
    """A literal mapping: a Dict or a ``dict(...)`` call."""

    node: cst.Dict | cst.Call
    entries: tuple[Entry, ...]
    complete: bool  # False when it also holds ``**spread`` or non-literal keys

    def get(self, key: str) -> Entry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None

    def keys(self) -> set[str]:
        return {e.key for e in self.entries}


def string_value(node: cst.BaseExpression) -> str | None:
    """The value of a plain (non-f, non-bytes) string literal."""
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def int_value(node: cst.BaseExpression) -> int | None:
    if isinstance(node, cst.Integer):
        try:
            return int(node.value.replace("_", ""), 0)
        except ValueError:
            return None
    return None


def read_mapping(ctx: FileContext, expr: cst.BaseExpression) -> Mapping | None:
    """The literal mapping ``expr`` is, or None. Names are not followed (see
    :func:`resolve_mapping`)."""
    if isinstance(expr, cst.Dict):
        entries: list[Entry] = []
        complete = True
        for element in expr.elements:
            if not isinstance(element, cst.DictElement):
                complete = False
                continue
            key = string_value(element.key)
            if key is None:
                complete = False
                continue
            entries.append(Entry(key, element.key, element.value, element))
        return Mapping(expr, tuple(entries), complete)
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Name)
        and expr.func.value == "dict"
        and not ctx.scope.lookup("dict")
    ):
        entries = []
        complete = True
        for arg in expr.args:
            if arg.keyword is None:
                complete = False  # dict(other, ...) or dict(**other)
                continue
            entries.append(Entry(arg.keyword.value, arg.keyword, arg.value, arg))
        return Mapping(expr, tuple(entries), complete)
    return None


def resolve_mapping(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None, depth: int = 0
) -> Mapping | None:
    """Like :func:`read_mapping`, also through a name bound exactly once to a literal
    mapping (``CONNECT_ARGS = {...}``)."""
    mapping = read_mapping(ctx, expr)
    if mapping is not None or depth >= _MAX_DEPTH:
        return mapping
    if isinstance(expr, cst.Name):
        bindings = (scope or ctx.scope).lookup(expr.value)
        if len(bindings) == 1:
            binding = bindings[0]
            if binding.kind is BindingKind.ASSIGNMENT and binding.value is not None:
                return resolve_mapping(ctx, binding.value, scope, depth + 1)
    return None


def keyword(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def has_star_kwargs(call: cst.Call) -> bool:
    return any(arg.star == "**" for arg in call.args)


# -- statements ------------------------------------------------------------------


def statement_of(
    ancestors: Sequence[cst.CSTNode], expr: cst.BaseExpression
) -> tuple[cst.SimpleStatementLine, cst.CSTNode] | None:
    """When ``expr`` (whose ancestors are given, innermost last) is a whole
    expression statement alone on its line, ``(line, block)``; else None."""
    chain = list(ancestors)
    child: cst.CSTNode = expr
    if chain and isinstance(chain[-1], cst.Await) and chain[-1].expression is expr:
        child = chain.pop()
    if len(chain) < 3:
        return None
    stmt, line, block = chain[-1], chain[-2], chain[-3]
    if not (
        isinstance(stmt, cst.Expr)
        and stmt.value is child
        and isinstance(line, cst.SimpleStatementLine)
        and len(line.body) == 1
        and isinstance(block, (cst.IndentedBlock, cst.Module))
    ):
        return None
    return line, block
