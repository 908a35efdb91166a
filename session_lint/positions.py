"""Positions of nodes, computed only for files that have findings, and cheaply.

libcst's ``PositionProvider`` through ``MetadataWrapper`` costs about twice a parse
(FACTS.md: 3x with the parse). The positions themselves come from one code
generation pass with a position-tracking state; this module runs the same pass
with a state that keeps plain tuples instead of frozen ``CodeRange`` dataclasses
(the bulk of the cost) and skips the newline regex for tokens without newlines.
A test compares the answers with ``PositionProvider`` on every fixture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import libcst as cst
from libcst._position import CodePosition, CodeRange
from libcst.metadata.position_provider import NEWLINE_RE, PositionProvidingCodegenState

_Span = tuple[int, int, int, int]


class _Sink:
    """Stands in for the metadata provider the codegen state expects."""

    def __init__(self) -> None:
        self._computed: dict[cst.CSTNode, _Span] = {}


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

    @contextmanager
    def record_syntactic_position(
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> Iterator[None]:
        line, column = self.line, self.column
        try:
            yield
        finally:
            computed: dict[cst.CSTNode, _Span] = self.provider._computed  # type: ignore[assignment]
            end_line, end_column = self.line, self.column
            if start_node is not None:
                line, column = computed[start_node][:2]
            if end_node is not None:
                end_line, end_column = computed[end_node][2:]
            computed[node] = (line, column, end_line, end_column)


class Positions(Mapping[cst.CSTNode, CodeRange]):
    """``PositionProvider``'s ranges by node identity, built on access."""

    def __init__(self, spans: dict[cst.CSTNode, _Span]) -> None:
        self._spans = spans

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        line, column, end_line, end_column = self._spans[node]
        return CodeRange(CodePosition(line, column), CodePosition(end_line, end_column))

    def __iter__(self) -> Iterator[cst.CSTNode]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


def node_positions(module: cst.Module) -> Positions:
    sink = _Sink()
    state = _State(
        default_indent=module.default_indent,
        default_newline=module.default_newline,
        provider=sink,  # type: ignore[arg-type]
    )
    module._codegen(state)
    return Positions(sink._computed)
