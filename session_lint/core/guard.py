"""Keep pathological files away from libcst's native parser.

libcst's parser recurses once per nesting level: an expression ~8,000 levels deep
(``x = a+a+…`` on one line, a long ``a.b.c…`` chain) overflows its stack and kills
the process, and well before that the parse slows down sharply (measured with
libcst 1.9: 1,000 chained ``+`` take 0.15 s, 2,000 take 0.7 s, 4,000 take 3 s;
1,000 nested calls, which CPython refuses outright, take 9 s).

The check is in two steps so that normal files pay almost nothing:
1. a screen on the bytes: a deep expression needs at least :data:`MAX_DEPTH`
   operator characters in one statement, so a file (or each blank-line separated
   block of it) with fewer cannot hold one (~1 % of the parse time; on the
   standard library and SQLAlchemy 9 of ~2,000 files pass the screen);
2. for the few files the screen lets through, CPython's own parser (about 10x
   faster than libcst, and iterative where it matters) builds an ``ast`` whose
   depth is measured without recursion.

A blank line inside a deep expression can hide it from the screen; such a file is
still contained by the runner's process pool (a crashed worker costs one file).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Deeper than this (in ``ast`` levels) is reported instead of parsed. Real code
# stays far below: the deepest file of the standard library and SQLAlchemy is
# 32 levels deep.
MAX_DEPTH = 1000

_ONLY_AST = 0x400  # ast.PyCF_ONLY_AST, without importing ast for every file

# The characters and words that add a nesting level in an expression tree.
_OPERATOR_BYTES = b"+-*/%|&^@~.([<>"
_NOT_OPERATORS = bytes(b for b in range(256) if b not in _OPERATOR_BYTES)
_OPERATOR_WORDS = (b"not ", b" if ", b"lambda", b"await ")


@dataclass(frozen=True)
class TooComplex:
    """Why a file is not given to libcst, and where."""

    line: int
    column: int
    message: str


def _operators(source: bytes) -> int:
    return len(source.translate(None, _NOT_OPERATORS)) + sum(map(source.count, _OPERATOR_WORDS))


def may_be_too_deep(source: bytes) -> bool:
    """The cheap screen: False means no expression in ``source`` can be too deep."""
    if len(source) < MAX_DEPTH or _operators(source) < MAX_DEPTH:
        return False
    # A statement never spans a blank line unless it is inside brackets, so the
    # blocks between blank lines are a good (not a sound, see above) unit.
    return any(
        len(block) >= MAX_DEPTH and _operators(block) >= MAX_DEPTH
        for block in source.replace(b"\r\n", b"\n").split(b"\n\n")
    )


def check(source: bytes) -> TooComplex | None:
    """None when libcst can be given ``source``; otherwise why not."""
    if not may_be_too_deep(source):
        return None
    try:
        tree = compile(source, "<guard>", "exec", dont_inherit=True, flags=_ONLY_AST)
    except RecursionError:
        return TooComplex(1, 1, f"file is too deeply nested to analyse (over {MAX_DEPTH} levels)")
    except SyntaxError as exc:
        # CPython's parser is the running interpreter's: it rejects syntax newer
        # than itself (a 3.12 ``type`` statement on 3.11), which libcst reads. Only
        # its own nesting limit says the file is too deep; any other error is for
        # libcst to decide (session_lint/syntax.py).
        if "too many nested" not in exc.msg:
            return None
        return TooComplex(
            exc.lineno or 1,
            exc.offset or 1,
            f"file is too deeply nested to analyse (CPython: {exc.msg})",
        )
    except MemoryError:
        # CPython's "Parser stack overflowed - Python source too complex to parse".
        return TooComplex(1, 1, "file is too complex to analyse (CPython cannot parse it)")
    except ValueError:
        return None  # e.g. NUL bytes: libcst reports these itself, quickly
    deepest = _deepest(tree)
    if deepest is None:
        return None
    line, column = deepest
    return TooComplex(
        line, column, f"expression too deeply nested to analyse (over {MAX_DEPTH} levels)"
    )


def _deepest(tree: object) -> tuple[int, int] | None:
    """The statement in which the tree first goes deeper than :data:`MAX_DEPTH`."""
    import ast  # only for the few files that pass the screen

    if not isinstance(tree, ast.AST):
        return None
    stack: list[tuple[ast.AST, int, tuple[int, int]]] = [(tree, 0, (1, 1))]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, ast.stmt):
            where = (node.lineno, node.col_offset + 1)
        if depth > MAX_DEPTH:
            return where
        stack.extend((child, depth + 1, where) for child in ast.iter_child_nodes(node))
    return None


# What the CLI runs with (``runner.RECURSION_LIMIT``); a library caller such as the
# flake8 plugin may run with Python's default of 1,000.
DEEP_RECURSION_LIMIT = 10_000


@contextmanager
def recursion_limit(limit: int = DEEP_RECURSION_LIMIT) -> Iterator[None]:
    """Raise the recursion limit to ``limit`` (never lower it) for the block.

    libcst's tree nests one level per piece of an implicit string concatenation,
    so a long generated one (``pydoc_data/topics.py``) is deeper than the default
    limit allows its recursive passes (code generation, positions)."""
    before = sys.getrecursionlimit()
    if before < limit:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        if before < limit:
            sys.setrecursionlimit(before)
