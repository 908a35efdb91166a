"""Where a transaction is open, and what a session does in straight-line order.

A *transaction block* is the body of ``async with s.begin():`` (or
``begin_nested()``, ``async with factory.begin() as s:``, ``async with
engine.begin() as conn:``). Sessions are keyed by their dotted spelling (``s``,
``self.session``) within one function: the analysis is lexical and never crosses
a function boundary.

*Straight-line order*: the statements that run before a node on every path
through the function — the earlier statements of each enclosing block, up to the
function body. Operations inside an earlier ``if``/``for``/``try`` may not have run,
so they never count as "has happened"; they do count as "may have reset" (a
``commit()`` there), so that conclusions stay on the safe side.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, dotted_name, strip_await
from session_lint.core.walker import SCOPE_TYPES, children, iter_nodes
from session_lint.known import EXECUTE_METHODS, TEXT_FUNCTIONS, WRITE_CONSTRUCTORS, is_write_sql
from session_lint.semantics.sessions import (
    is_connection,
    is_session,
    is_session_factory,
    is_session_source,
)
from session_lint.semantics.sql import literal_string

BEGIN_METHODS = frozenset({"begin", "begin_nested"})
# Session methods that start a transaction when none is open (autobegin). Measured on
# SQLAlchemy 2.1: ``add``/``merge``/``get``/``execute`` all make a following
# ``begin()`` raise; an empty ``flush()`` does not.
AUTOBEGIN_METHODS = EXECUTE_METHODS | {
    "get",
    "get_one",
    "add",
    "add_all",
    "merge",
    "delete",
    "refresh",
    "connection",
}
# Methods after which no transaction is open any more.
ENDING_METHODS = frozenset({"commit", "rollback", "close", "reset", "invalidate"})
WRITE_METHODS = frozenset({"add", "add_all", "delete", "merge", "flush"})


def session_key(expr: cst.BaseExpression) -> str | None:
    return dotted_name(expr)


@dataclass(frozen=True)
class MethodCall:
    """``<receiver>.<method>(...)``."""

    call: cst.Call
    receiver: cst.BaseExpression
    method: str

    @property
    def key(self) -> str | None:
        return session_key(self.receiver)


def method_call(expr: cst.BaseExpression) -> MethodCall | None:
    expr = strip_await(expr)
    if type(expr) is cst.Call and type(expr.func) is cst.Attribute:
        return MethodCall(expr, expr.func.value, expr.func.attr.value)
    return None


def transaction_keys(ctx: FileContext, node: cst.With) -> list[str]:
    """The sessions/connections whose transaction the ``with`` statement holds open."""
    keys: list[str] = []
    for item in node.items:
        call = method_call(item.item)
        if call is None or call.method not in BEGIN_METHODS:
            continue
        key: str | None = None
        if is_session(ctx, call.receiver) or is_connection(ctx, call.receiver):
            key = call.key
        elif item.asname is not None and isinstance(item.asname.name, cst.Name):
            # ``factory.begin() as s`` / ``engine.begin() as conn``: the bound name.
            if is_session_factory(ctx, call.receiver) or is_session_source(ctx, item.item):
                key = item.asname.name.value
            elif isinstance(item.asname.name, cst.Name) and is_connection(ctx, item.asname.name):
                key = item.asname.name.value
        if key is not None:
            keys.append(key)
    return keys


def function_ancestors(ctx: FileContext) -> Sequence[cst.CSTNode]:
    """Ancestors of the node being visited, innermost last, up to (excluding) the
    innermost function, class or lambda."""
    chain = ctx.ancestor_chain()
    for i in range(len(chain) - 1, -1, -1):
        if type(chain[i]) in SCOPE_TYPES:
            return chain[i + 1 :]
    return chain


def enclosing_transactions(ctx: FileContext) -> list[tuple[cst.With, str]]:
    """Transaction blocks around the node being visited, outermost first, within its
    function. A node in a ``with`` item (not the body) is not inside that block."""
    chain = function_ancestors(ctx)
    out: list[tuple[cst.With, str]] = []
    for i, node in enumerate(chain):
        if type(node) is cst.With:
            inner = chain[i + 1] if i + 1 < len(chain) else None
            if inner is not node.body:
                continue
            out.extend((node, key) for key in _keys_of_block(ctx, node))
    return out


def _keys_of_block(ctx: FileContext, node: cst.With) -> list[str]:
    """``transaction_keys`` of a block, once per block: every call in its body asks
    (the block's scope is the same for all of them: they are within its function)."""
    cached = ctx.block_keys.get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    keys = transaction_keys(ctx, node)
    ctx.block_keys[id(node)] = (node, keys)
    return keys


def owning_begin_block(ctx: FileContext, key: str) -> cst.With | None:
    """The innermost ``with <key>.begin():`` (or ``factory.begin() as <key>``)
    around the visited node within its function: the block whose exit ends
    ``key``'s transaction (a ``begin_nested()`` block ends only a savepoint)."""
    for with_node, owned in reversed(enclosing_transactions(ctx)):
        if owned == key and any(
            (found := method_call(item.item)) is not None and found.method == "begin"
            for item in with_node.items
        ):
            return with_node
    return None


def in_transaction(ctx: FileContext, key: str | None = None) -> bool:
    return any(key is None or k == key for _, k in enclosing_transactions(ctx))


# -- walking statements --------------------------------------------------------------


def method_calls(node: cst.CSTNode) -> Iterator[MethodCall]:
    """Method calls under ``node`` in source order (outer call first)."""
    for sub in iter_nodes(node):
        if isinstance(sub, cst.Call) and isinstance(sub.func, cst.Attribute):
            yield MethodCall(sub, sub.func.value, sub.func.attr.value)


def statement_body(node: cst.CSTNode) -> Sequence[cst.BaseStatement] | None:
    """The statement list a block node holds, if it is one."""
    if isinstance(node, cst.IndentedBlock):
        return node.body
    if isinstance(node, cst.Module):
        return node.body
    return None


# Nodes that can hold statements. Statements never sit inside an expression, so a
# search for statements and blocks need not enter anything else.
_STATEMENT_HOLDERS = (
    cst.IndentedBlock,
    cst.BaseCompoundStatement,
    cst.Else,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.Finally,
    cst.MatchCase,
)
# Whether a node type holds statements and is not a nested scope, by exact type
# (``isinstance`` on libcst's abstract classes goes through ``ABCMeta``).
_ENTERED: dict[type, bool] = {}


def _entered(node_type: type) -> bool:
    entered = _ENTERED.get(node_type)
    if entered is None:
        entered = issubclass(node_type, _STATEMENT_HOLDERS) and node_type not in SCOPE_TYPES
        _ENTERED[node_type] = entered
    return entered


def blocks_and_withs(body: cst.IndentedBlock) -> Iterator[cst.IndentedBlock | cst.With]:
    """The ``IndentedBlock`` and ``With`` nodes under ``body`` (itself included), in
    the order ``walk_with_ancestors([body])`` yields them, not entering nested scopes;
    only statements are visited, never expressions."""
    stack: list[cst.CSTNode] = [body]
    while stack:
        node = stack.pop()
        if type(node) is cst.IndentedBlock or type(node) is cst.With:
            yield node
        if _entered(type(node)):
            stack.extend(reversed(children(node)))


def walk_with_ancestors(
    nodes: Sequence[cst.CSTNode],
) -> Iterator[tuple[cst.CSTNode, Sequence[cst.CSTNode]]]:
    """Every node under ``nodes`` in source order with its ancestors below them
    (innermost last), not entering nested scopes."""
    path: list[cst.CSTNode] = []
    stack: list[tuple[cst.CSTNode, int]] = [(n, 0) for n in reversed(nodes)]
    while stack:
        node, depth = stack.pop()
        del path[depth:]
        yield node, path
        path.append(node)
        if type(node) in SCOPE_TYPES:
            continue
        stack.extend((kid, depth + 1) for kid in reversed(children(node)))


# -- what a statement writes ----------------------------------------------------------

_TABLE_WRITE_METHODS = frozenset({"insert", "update", "delete"})


def is_write_statement(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """``insert(User).values(...)``, ``users.update()...``, ``pg_insert(...)
    .on_conflict_do_nothing()``, ``text("UPDATE ...")``, a literal write SQL string,
    or a name bound once to one of these."""
    expr = strip_await(expr)
    while isinstance(expr, cst.Call):
        func = expr.func
        if ctx.resolves_to(func, WRITE_CONSTRUCTORS):
            return True
        if ctx.resolves_to(func, TEXT_FUNCTIONS):
            text = literal_string(expr.args[0].value) if expr.args else None
            return text is not None and is_write_sql(text)
        if not isinstance(func, cst.Attribute):
            return False
        if func.attr.value in _TABLE_WRITE_METHODS and not isinstance(func.value, cst.Call):
            return True  # users.insert(), User.__table__.delete()
        expr = func.value
    text = literal_string(expr)
    if text is not None:
        return is_write_sql(text)
    if isinstance(expr, cst.Name) and depth < 2:
        bindings = ctx.scope.lookup(expr.value)
        if (
            len(bindings) == 1
            and bindings[0].kind is BindingKind.ASSIGNMENT
            and bindings[0].value is not None
        ):
            return is_write_statement(ctx, bindings[0].value, depth + 1)
    return False
