"""Positions of nodes, computed only for files that have findings, and cheaply.

libcst's ``PositionProvider`` through ``MetadataWrapper`` costs about twice a parse
(3x with the parse: docs/architecture.md, "What the walk costs"). The positions themselves come from one code
generation pass with a position-tracking state; this module runs the same pass
with a state that keeps plain tuples instead of frozen ``CodeRange`` dataclasses
(the bulk of the cost), skips the newline regex for tokens without newlines and
records syntactic positions without a generator-based context manager.

Most files with findings have them in a few top-level statements, so
:func:`statement_positions` runs the pass over those statements only: a top-level
statement starts at column 0 after a newline, so its nodes' positions are those of
the statement's own pass shifted by the line it starts on, and that line is found
in the source text (libcst writes a module back as its source; the exceptions we
know of make it decline). Tests compare both with ``PositionProvider`` node for
node.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator, Mapping
from functools import partial
from itertools import chain
from types import TracebackType

import libcst as cst
from libcst._position import CodePosition, CodeRange
from libcst.metadata.position_provider import NEWLINE_RE, PositionProvidingCodegenState

from session_lint.core.memo import StatementMemo

_Span = tuple[int, int, int, int]
# Where libcst's code is not the source (libcst 1.x, measured): a form feed or a
# backslash continuation before the first token of a line is not kept, so the
# whole pass writes fewer characters or lines than the text has. In a string the
# pattern costs only the shortcut.
_UNKEPT = re.compile(r"\x0c|^[ \t]*\\", re.MULTILINE)
# Up to this many statements asked for, each is found by searching the text;
# beyond, by the line Python's parser gives it (one ``compile``, then linear).
_FEW_STATEMENTS = 16


class _Sink:
    """Stands in for the metadata provider the codegen state expects."""

    def __init__(self) -> None:
        self._computed: dict[cst.CSTNode, _Span] = {}


class _Recording:
    """``record_syntactic_position``'s bookkeeping as a plain context manager:
    ``contextlib.contextmanager`` was a fifth of the pass."""

    __slots__ = ("_column", "_end_node", "_line", "_node", "_start_node", "_state")

    def __init__(
        self,
        state: _State,
        node: cst.CSTNode,
        start_node: cst.CSTNode | None,
        end_node: cst.CSTNode | None,
    ) -> None:
        self._state = state
        self._node = node
        self._start_node = start_node
        self._end_node = end_node
        self._line = state.line
        self._column = state.column

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        state = self._state
        computed: dict[cst.CSTNode, _Span] = state.provider._computed  # type: ignore[assignment]
        line, column = self._line, self._column
        end_line, end_column = state.line, state.column
        if self._start_node is not None:
            line, column = computed[self._start_node][:2]
        if self._end_node is not None:
            end_line, end_column = computed[self._end_node][2:]
        computed[self._node] = (line, column, end_line, end_column)


class _State(PositionProvidingCodegenState):
    # Same bookkeeping as libcst's state, on tuples.
    def _update_position(self, value: str) -> None:
        if "\n" not in value and "\r" not in value:
            self.column += len(value)
            return
        segments = NEWLINE_RE.split(value)
        self.line += len(segments) - 1
        self.column = len(segments[-1])

    def before_codegen(self, node: cst.CSTNode) -> None:
        self._stack.append((self.line, self.column))  # type: ignore[arg-type]

    def after_codegen(self, node: cst.CSTNode) -> None:
        start: tuple[int, int] = self._stack.pop()  # type: ignore[assignment]
        computed: dict[cst.CSTNode, _Span] = self.provider._computed  # type: ignore[assignment]
        if node not in computed:
            computed[node] = (start[0], start[1], self.line, self.column)

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _Recording:
        return _Recording(self, node, start_node, end_node)


class Positions(Mapping[cst.CSTNode, CodeRange]):
    """``PositionProvider``'s ranges by node identity, built on access. Each part
    holds spans computed by one pass and the lines to add to them."""

    def __init__(self, parts: list[tuple[dict[cst.CSTNode, _Span], int]]) -> None:
        self._parts = parts
        # Which part holds a node, built on the first lookup: scanning the parts on
        # every lookup made a file with many findings quadratic (one part per
        # statement with findings, several lookups per finding).
        self._part_of: dict[cst.CSTNode, int] | None = None

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        parts = self._parts
        if len(parts) == 1:
            spans, shift = parts[0]
        else:
            if self._part_of is None:
                part_of: dict[cst.CSTNode, int] = {}
                for number, (spans, _) in enumerate(parts):
                    for key in spans:
                        part_of.setdefault(key, number)  # the first part wins, as before
                self._part_of = part_of
            index = self._part_of.get(node)
            if index is None:
                raise KeyError(node)
            spans, shift = parts[index]
        span = spans.get(node)
        if span is None:
            raise KeyError(node)
        line, column, end_line, end_column = span
        return CodeRange(
            CodePosition(line + shift, column), CodePosition(end_line + shift, end_column)
        )

    def __iter__(self) -> Iterator[cst.CSTNode]:
        return chain.from_iterable(spans for spans, _ in self._parts)

    def __len__(self) -> int:
        return sum(len(spans) for spans, _ in self._parts)


def _generate(node: cst.CSTNode, module: cst.Module) -> tuple[dict[cst.CSTNode, _Span], list[str]]:
    """One position pass over ``node`` starting at line 1, column 0: its spans and
    the tokens it wrote."""
    sink = _Sink()
    state = _State(
        default_indent=module.default_indent,
        default_newline=module.default_newline,
        provider=sink,  # type: ignore[arg-type]
    )
    node._codegen(state)
    return sink._computed, state.tokens


def node_positions(module: cst.Module) -> Positions:
    """Positions of every node of the module: one pass over all of it."""
    spans, _ = _generate(module, module)
    return Positions([(spans, 0)])


def statement_positions(
    module: cst.Module,
    text: str,
    statements: Collection[cst.CSTNode],
    memo: StatementMemo | None = None,
) -> Positions | None:
    """Positions of every node in those of ``statements`` that are top-level
    statements of ``module`` (by identity), equal to :func:`node_positions`' answers
    for them; ``text`` is the source the module was parsed from, decoded. None when
    the shortcut cannot be proven exact: the caller then runs the whole pass.

    The whole pass writes the module's source, token by token, and a top-level
    statement's tokens start at the beginning of a line. So a statement's nodes get
    the positions of a pass over the statement alone, shifted by the lines of the
    text before it. Its place in the text: where its code occurs after the previous
    statement located, if that is the only place; among several, the one on the line
    Python's own parser puts the statement on. Costs one pass over the statements
    asked for (none for a statement ``memo`` kept: session_lint/core/memo.py), plus a
    ``compile`` to an AST when some code is repeated.
    """
    wanted = {id(s) for s in statements}
    body = module.body
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # a lone CR: ``str.count("\n")`` would not count lines as the pass does
    if _UNKEPT.search(text):
        return None  # libcst drops some of it: the pass does not write the text there
    if not module.has_trailing_newline and module.footer:
        return None  # the text lacks a footer's final newline, which the pass writes
    parts: list[tuple[dict[cst.CSTNode, _Span], int]] = []
    offset, line = 0, 1  # a place in the text, and the line it is on
    last = len(body) - 1
    python_lines: list[int] | None = None
    line_starts: list[int] | None = None
    if len(wanted) > _FEW_STATEMENTS:
        # Many statements: place each by its line. Searching the rest of the text
        # for a second occurrence of each one was quadratic in the statements.
        python_lines = _python_lines(module, text)
        if python_lines is not None:
            line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
    for index, statement in enumerate(body):
        if id(statement) not in wanted:
            continue
        if memo is None:
            spans, tokens = _generate(statement, module)
        else:
            # The pass writes the statement with the module's indent and newline.
            variant = f"{module.default_indent!r}{module.default_newline!r}"
            spans, tokens = memo.positions.get(
                statement, variant, partial(_generate, statement, module)
            )
        code = "".join(tokens)
        haystack = text
        if index == last and not module.has_trailing_newline:
            # The module drops the file's final newline token; the pass writes it.
            if not tokens or tokens[-1] not in ("\n", "\r\n"):
                return None
            haystack = text + tokens[-1]
        if not code:
            return None
        if line_starts is not None and python_lines is not None:
            first = python_lines[index] - spans[statement][0] + 1  # the line it starts on
            if not 1 <= first <= len(line_starts):
                return None
            start = line_starts[first - 1]
            if start < offset or not haystack.startswith(code, start):
                return None
            line += haystack.count("\n", offset, start)
            parts.append((spans, line - 1))
            offset = start + len(code)
            line += code.count("\n")
            continue
        start = haystack.find(code, offset)
        if start < 0:
            return None
        if haystack.find(code, start + 1) >= 0:
            # Several candidates (repeated code): the statement's line decides.
            if python_lines is None:
                python_lines = _python_lines(module, text)
                if python_lines is None:
                    return None
            first = python_lines[index] - spans[statement][0] + 1  # the line it starts on
            start = _on_line(haystack, code, offset, line, first)
            if start < 0:
                return None
        if start > 0 and haystack[start - 1] != "\n":
            return None  # not at the start of a line
        line += haystack.count("\n", offset, start)
        parts.append((spans, line - 1))
        offset = start + len(code)
        line += code.count("\n")
    return Positions(parts)


def _on_line(haystack: str, code: str, offset: int, line: int, wanted: int) -> int:
    """Where ``code`` occurs in ``haystack`` from ``offset`` (which is on ``line``)
    starting on line ``wanted``, or -1."""
    start = haystack.find(code, offset)
    while start >= 0:
        line += haystack.count("\n", offset, start)
        if line == wanted:
            return start
        if line > wanted:
            return -1
        offset = start
        start = haystack.find(code, start + 1)
    return -1


def _python_lines(module: cst.Module, text: str) -> list[int] | None:
    """The line each top-level statement of ``module`` starts on (its first token,
    as ``PositionProvider`` counts), by Python's parser; None if the two parsers do
    not agree on what the statements are."""
    try:
        tree = compile(text, "<positions>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(tree, ast.Module):
        return None
    found = tree.body
    lines: list[int] = []
    at = 0
    for statement in module.body:
        # ``a; b`` is one libcst line of two small statements, two for Python.
        parts = statement.body if isinstance(statement, cst.SimpleStatementLine) else (statement,)
        if at + len(parts) > len(found):
            return None
        for part, node in zip(parts, found[at : at + len(parts)], strict=True):
            ours, theirs = type(part).__name__, type(node).__name__
            if theirs not in (ours, "Async" + ours) and (ours, theirs) != ("Del", "Delete"):
                return None
        lines.append(found[at].lineno)
        at += len(parts)
    return lines if at == len(found) else None
