"""What an analysis computes per top-level statement from that statement alone,
kept from one analysis of a buffer to the next.

The language server re-parses only the statements an edit touched and keeps the
others' nodes (session_lint/editors/reparse.py). Anything that depends on nothing
but a kept statement's nodes is then the same as last time: the positions of its
nodes (a code generation pass, ``core/positions``), the string literals in it
(SL204's scan for a pooler URL, ``semantics/pooler``) and the order the walk
visits its nodes in (``core/walker``). Entries are keyed by the
statement's identity and hold the statement, so an identity is never reused while
its entry lives; :meth:`StatementMemo.keep_only` drops the statements a new tree
no longer has. The command line analyses each file once and keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import libcst as cst

Value = TypeVar("Value")
# A statement's position pass (``core/positions._generate``): its nodes' spans
# (start line, start column, end line, end column) and the tokens it wrote.
Generated = tuple[dict[cst.CSTNode, tuple[int, int, int, int]], list[str]]


class _PerStatement(Generic[Value]):
    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], tuple[cst.CSTNode, Value]] = {}

    def get(self, statement: cst.CSTNode, variant: str, make: Callable[[], Value]) -> Value:
        """The value for ``statement`` (and ``variant``: what else it depends on),
        made now when not kept."""
        key = (id(statement), variant)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is statement:
            return entry[1]
        value = make()
        self._entries[key] = (statement, value)
        return value

    def keep_only(self, ids: set[int]) -> None:
        for key in [k for k in self._entries if k[0] not in ids]:
            del self._entries[key]


class StatementMemo:
    """Per-statement results kept for one buffer (see the module docstring)."""

    def __init__(self) -> None:
        self.positions: _PerStatement[Generated] = _PerStatement()
        self.strings: _PerStatement[list[cst.BaseExpression]] = _PerStatement()
        # Its nodes in the walk's order, with their depths (``core/walker.preorder``).
        self.nodes: _PerStatement[list[tuple[cst.CSTNode, int]]] = _PerStatement()

    def keep_only(self, module: cst.Module) -> None:
        """Forget every statement that is not one of ``module``'s."""
        ids = {id(statement) for statement in module.body}
        self.positions.keep_only(ids)
        self.strings.keep_only(ids)
        self.nodes.keep_only(ids)
