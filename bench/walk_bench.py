"""What a walk of the syntax tree costs, on the reference corpus of lint_bench.py:
the measurements behind the walker, the scopes and the positions
(docs/architecture.md, "What the walk costs").

    python bench/walk_bench.py [--runs 3]

Each step runs over every file of the corpus; the median of the runs is printed
in seconds and as a multiple of ``libcst.parse_module`` alone. The libcst
providers are the ones session-lint replaced: ``CSTVisitor`` (by
``core/walker.py``), ``QualifiedNameProvider`` (by ``semantics/scopes.py``) and
``PositionProvider`` through ``MetadataWrapper`` (by ``core/positions.py``).
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from bench.lint_bench import build_corpus
from session_lint.analyzer import ScopeTracker
from session_lint.core.context import FileContext
from session_lint.core.positions import node_positions
from session_lint.core.scopes import module_scope
from session_lint.core.walker import Dispatcher
from session_lint.project.config import Config

Step = Callable[[bytes], object]


def _parse(source: bytes) -> cst.Module:
    return cst.parse_module(source)


def _visit(source: bytes) -> object:
    return _parse(source).visit(cst.CSTVisitor())


def _raise(owner: object, exc: BaseException) -> None:
    raise exc


def _walk(source: bytes) -> None:
    Dispatcher(_raise).walk(_parse(source))


def _qualified_names(source: bytes) -> object:
    return MetadataWrapper(_parse(source), unsafe_skip_copy=True).resolve(QualifiedNameProvider)


def _scopes(source: bytes) -> None:
    """The walk with the analyzer's scope tracker: every scope built and entered."""
    module = _parse(source)
    ctx = FileContext("bench.py", Config(), module, module_scope(module), [], False)
    dispatcher = Dispatcher(_raise)
    ctx.ancestors = dispatcher.ancestors
    tracker = ScopeTracker(ctx)
    dispatcher.add(tracker, leaves=False)
    dispatcher.add(tracker, visits=False)
    dispatcher.walk(module)


def _libcst_positions(source: bytes) -> object:
    return MetadataWrapper(_parse(source), unsafe_skip_copy=True).resolve(PositionProvider)


def _positions(source: bytes) -> object:
    return node_positions(_parse(source))


STEPS: tuple[tuple[str, Step], ...] = (
    ("ast.parse (stdlib)", lambda s: ast.parse(s)),
    ("libcst.parse_module", _parse),
    ("parse + CSTVisitor walk", _visit),
    ("parse + session-lint walker", _walk),
    ("parse + QualifiedNameProvider", _qualified_names),
    ("parse + session-lint walk with scopes", _scopes),
    ("parse + PositionProvider (skip copy)", _libcst_positions),
    ("parse + session-lint positions", _positions),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        files, lines = build_corpus(Path(work), large=False)
        sources = [p.read_bytes() for p in sorted(Path(work).rglob("*.py"))]
        print(f"corpus: {files} files, {lines} lines; median of {args.runs} runs")
        medians: dict[str, float] = {}
        for name, step in STEPS:
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                for source in sources:
                    step(source)
                times.append(time.perf_counter() - started)
            medians[name] = statistics.median(times)
        base = medians["libcst.parse_module"]
        for name, seconds in medians.items():
            print(f"{name:<40} {seconds:7.2f} s  {seconds / base:5.2f}x parse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
