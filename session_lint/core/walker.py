"""One traversal of a libcst tree for every rule at once.

libcst's own ``visit`` rebuilds every node on the way out (its visitors double as
transformers), which costs about as much as parsing (docs/architecture.md, "What
the walk costs"). Rules here only read the tree, so this walker iterates each
node's child fields directly: about 4x cheaper than ``CSTVisitor`` on the standard
library, same nodes, source order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

import libcst as cst

# Fields that only hold whitespace and punctuation: never interesting to a rule,
# and skipping them is most of the speed-up.
_SKIPPED = frozenset(
    {
        "lpar",
        "rpar",
        "comma",
        "semicolon",
        "leading_lines",
        "lines_after_decorators",
        "header",
        "footer",
        "newline",
        "equal",
        "colon",
        "arrow",
        "dot",
        "lbracket",
        "rbracket",
        "lbrace",
        "rbrace",
        "asynchronous",
        "operator",
        "star",
        "whitespace",
        "trailing_whitespace",
        "first_line",
        "first_colon",
        "second_colon",
        "leading_whitespace",
    }
)
# Source order where dataclass field order differs from it.
_ORDER: dict[type[cst.CSTNode], tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "name", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "bases", "keywords", "body"),
    cst.Parameters: ("posonly_params", "params", "star_arg", "kwonly_params", "star_kwarg"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.ImportFrom: ("relative", "module", "names"),
    cst.Arg: ("keyword", "value"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.MatchCase: ("pattern", "guard", "body"),
}
_FIELDS: dict[type[cst.CSTNode], tuple[str, ...]] = {}


def child_fields(node_type: type[cst.CSTNode]) -> tuple[str, ...]:
    names = _FIELDS.get(node_type)
    if names is None:
        names = _ORDER.get(node_type) or tuple(
            f.name
            for f in dataclasses.fields(node_type)  # type: ignore[arg-type]
            if f.name not in _SKIPPED and not f.name.startswith("whitespace")
        )
        _FIELDS[node_type] = names
    return names


# Whether a field value's type is a node type. ``isinstance(v, cst.CSTNode)`` goes
# through ``ABCMeta.__instancecheck__``, which was half the cost of ``children``.
_IS_NODE: dict[type, bool] = {}


def _is_node_type(value_type: type) -> bool:
    flag = _IS_NODE[value_type] = issubclass(value_type, cst.CSTNode)
    return flag


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    out: list[cst.CSTNode] = []
    is_node = _IS_NODE.get
    for name in child_fields(type(node)):
        value = getattr(node, name)
        value_type = type(value)
        if value_type is tuple or value_type is list:
            for item in value:
                flag = is_node(type(item))
                if flag is None:
                    flag = _is_node_type(type(item))
                if flag:
                    out.append(item)
        else:
            flag = is_node(value_type)
            if flag is None:
                flag = _is_node_type(value_type)
            if flag:
                out.append(value)
    return out


# Nested scopes: what runs inside them runs at another time. As a set of exact
# types for the loops over every node (``isinstance`` on a libcst class goes
# through ``ABCMeta``; no parsed node is of a subclass of these).
_SCOPE_NODES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
SCOPE_TYPES = frozenset(_SCOPE_NODES)


def subtree(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every node under it, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def iter_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every node under it in source order, not entering nested
    functions, classes and lambdas (they are yielded, their insides are not)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is not node and type(current) in SCOPE_TYPES:
            continue
        stack.extend(reversed(children(current)))


Handler = Callable[[cst.CSTNode], object]


_HANDLER_NAMES: dict[type, tuple[str, ...]] = {}


def _handler_names(owner_type: type) -> tuple[str, ...]:
    """The ``visit_``/``leave_`` attributes of a class, in ``dir`` order, once per
    class (``dir`` is costly: the language server registers every rule per edit)."""
    names = _HANDLER_NAMES.get(owner_type)
    if names is None:
        names = tuple(a for a in dir(owner_type) if a.startswith(("visit_", "leave_")))
        _HANDLER_NAMES[owner_type] = names
    return names


class Dispatcher:
    """Calls ``visit_<NodeType>``/``leave_<NodeType>`` of many visitors in one walk.

    ``on_error`` receives (owner, exception) when a handler raises; that owner's
    handlers are dropped for the rest of the walk so one broken rule cannot take
    the others down.
    """

    def __init__(self, on_error: Callable[[object, BaseException], None]) -> None:
        self._visit: dict[str, list[tuple[object, Handler]]] = {}
        self._leave: dict[str, list[tuple[object, Handler]]] = {}
        self._on_error = on_error
        self.ancestors: list[cst.CSTNode] = []
        self._dead: set[int] = set()

    def add(self, owner: object, *, visits: bool = True, leaves: bool = True) -> None:
        """Register ``owner``'s handlers after those already added (visit and leave
        can be registered separately to run first on the way in, last on the way out)."""
        for attr in _handler_names(type(owner)):
            if visits and attr.startswith("visit_"):
                self._visit.setdefault(attr[6:], []).append((owner, getattr(owner, attr)))
            elif leaves and attr.startswith("leave_"):
                self._leave.setdefault(attr[6:], []).append((owner, getattr(owner, attr)))

    def _drop(self, owner: object) -> None:
        self._dead.add(id(owner))
        for table in (self._visit, self._leave):
            for key, handlers in table.items():
                table[key] = [h for h in handlers if h[0] is not owner]

    def _call(self, handlers: list[tuple[object, Handler]], node: cst.CSTNode) -> None:
        for owner, handler in handlers:
            if self._dead and id(owner) in self._dead:
                continue
            try:
                handler(node)
            except Exception as exc:
                self._drop(owner)
                self._on_error(owner, exc)

    def walk(
        self,
        root: cst.CSTNode,
        order_of: Callable[[cst.CSTNode], Order] | None = None,
    ) -> None:
        """Visit ``root`` and every node under it, in source order, each node's leave
        after its whole subtree. ``order_of``: the :func:`preorder` of each child of
        ``root`` at depth 1, when the caller keeps them (the language server keeps
        the unchanged statements' between edits: session_lint/core/memo.py)."""
        if order_of is None:
            events: Iterable[tuple[cst.CSTNode, int]] = _preorder(root, 0)
        else:
            events = chain(((root, 0),), *(order_of(kid) for kid in children(root)))
        visit, leave, ancestors = self._visit, self._leave, self.ancestors
        # The nodes whose leave is due once the walk is out of their subtree.
        pending: list[tuple[cst.CSTNode, int]] = []
        for node, depth in events:
            while pending and pending[-1][1] >= depth:
                self._leave_one(*pending.pop())
            del ancestors[depth:]
            ancestors.append(node)
            name = type(node).__name__
            handlers = visit.get(name)
            if handlers:
                self._call(handlers, node)
            if name in leave:
                pending.append((node, depth))
        while pending:
            self._leave_one(*pending.pop())

    def _leave_one(self, node: cst.CSTNode, depth: int) -> None:
        del self.ancestors[depth + 1 :]
        self._call(self._leave[type(node).__name__], node)


# A subtree's nodes in the walk's order (source order), each with its depth.
Order = list[tuple[cst.CSTNode, int]]


def preorder(node: cst.CSTNode, depth: int) -> Order:
    """``node`` (at ``depth``) and every node under it, in the walk's order."""
    return list(_preorder(node, depth))


def _preorder(node: cst.CSTNode, depth: int) -> Iterator[tuple[cst.CSTNode, int]]:
    stack = [(node, depth)]
    while stack:
        current, level = stack.pop()
        yield current, level
        kids = children(current)
        if kids:
            level += 1
            stack.extend((kid, level) for kid in reversed(kids))
