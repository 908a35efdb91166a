"""The one walk of every rule (session_lint/core/walker.py): libcst's own order of
visits and leaves, and the same events whether it finds each statement's nodes
itself or is handed the order the language server kept (session_lint/core/memo.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import libcst as cst

from session_lint.core.walker import Dispatcher, preorder

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for p in [
        *(ROOT / "fixtures" / "rules").glob("*.py"),
        *(ROOT / "fixtures" / "apps").rglob("*.py"),
    ]
    if not p.name.startswith("SL000")
)
NODE_TYPES = [t for _, t in inspect.getmembers(cst, inspect.isclass) if issubclass(t, cst.CSTNode)]
Event = tuple[str, int, tuple[int, ...]]


def _recorder(events: list[Event], ancestors: list[cst.CSTNode]) -> object:
    """An owner with a visit and a leave handler for every node type."""

    def handler(kind: str) -> object:
        def record(self: object, node: cst.CSTNode) -> None:
            events.append((kind, id(node), tuple(id(a) for a in ancestors)))

        return record

    names = {f"visit_{t.__name__}": handler("visit") for t in NODE_TYPES}
    names.update({f"leave_{t.__name__}": handler("leave") for t in NODE_TYPES})
    return type("Recorder", (), names)()


def _events(module: cst.Module, *, kept: bool) -> list[Event]:
    events: list[Event] = []
    dispatcher = Dispatcher(lambda owner, exc: (_ for _ in ()).throw(exc))
    dispatcher.add(_recorder(events, dispatcher.ancestors))
    if kept:
        dispatcher.walk(module, lambda statement: preorder(statement, 1))
    else:
        dispatcher.walk(module)
    return events


class _LibcstOrder(cst.CSTVisitor):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.events.append(("visit", id(node)))
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.events.append(("leave", id(original_node)))


def test_kept_orders_give_the_same_events() -> None:
    assert len(SOURCES) > 50
    for path in SOURCES:
        module = cst.parse_module(path.read_bytes())
        plain = _events(module, kept=False)
        assert plain, path
        assert _events(module, kept=True) == plain, path


def test_libcsts_order_of_visits_and_leaves() -> None:
    for path in SOURCES:
        module = cst.parse_module(path.read_bytes())
        ours = [(kind, node) for kind, node, _ in _events(module, kept=False)]
        walked = {node for _, node in ours}
        theirs = _LibcstOrder()
        module.visit(theirs)
        # libcst also enters the whitespace and punctuation nodes the walk skips.
        assert [e for e in theirs.events if e[1] in walked] == ours, path
        skipped = {type(n).__name__ for n in _all_nodes(module) if id(n) not in walked}
        assert not skipped & MEANINGFUL, (path, skipped & MEANINGFUL)


# Node types a rule may look for: the walk must never leave one out.
MEANINGFUL = frozenset(
    t.__name__
    for t in NODE_TYPES
    if issubclass(
        t,
        (
            cst.BaseExpression,
            cst.BaseStatement,
            cst.BaseSmallStatement,
            cst.BaseSuite,
            cst.Arg,
            cst.Param,
            cst.Decorator,
            cst.WithItem,
            cst.ImportAlias,
            cst.Annotation,
            cst.ExceptHandler,
            cst.MatchCase,
        ),
    )
)


def _all_nodes(module: cst.Module) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []

    class Every(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            found.append(node)
            return True

    module.visit(Every())
    return found


def test_ancestors_end_with_the_node() -> None:
    module = cst.parse_module("async def f(s):\n    await s.execute(q)\n")
    events = _events(module, kept=True)
    depths = {node: len(chain) for kind, node, chain in events if kind == "visit"}
    for _, node, chain in events:
        assert chain[-1] == node
        assert len(chain) == depths[node]
