"""Our position passes give libcst's ``PositionProvider`` answers, node for node.

``node_positions`` runs over the whole module; ``statement_positions`` over chosen
top-level statements only, placing each by the source text (and, for repeated
code, by Python's own parser). Both are compared with ``PositionProvider`` on every
fixture, on a sample of the standard library and on the layouts that move lines
and columns: a header comment, a BOM, CRLF, decorators, ``a; b``, no final newline.
"""

from __future__ import annotations

import random
import re
import sysconfig
from collections.abc import Collection, Mapping
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from session_lint import analyzer
from session_lint.analyzer import analyze
from session_lint.core import positions
from session_lint.core.memo import StatementMemo
from session_lint.core.positions import Positions, node_positions, statement_positions
from tests.lint.fixture_files import ROOT, all_fixtures, load

FILES = sorted((ROOT / "fixtures").rglob("*.py"))
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Every 40th module of the standard library (tests and their data included): about
# fifty files, in a stable order.
STDLIB_SAMPLE = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)[::40]


def reference(module: cst.Module) -> Mapping[cst.CSTNode, CodeRange]:
    return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)


def under(statement: cst.CSTNode, reference: Mapping[cst.CSTNode, CodeRange]) -> set[int]:
    """Identities of ``statement`` and every node below it (every field, whitespace
    included) that ``PositionProvider`` has a position for."""
    found: set[int] = set()
    stack: list[cst.CSTNode] = [statement]
    while stack:
        node = stack.pop()
        if node in reference:
            found.add(id(node))
        stack.extend(node.children)
    return found


def assert_statements_exact(source: bytes, *, alone_every: int = 1) -> None:
    """``statement_positions`` for all top-level statements at once, and for every
    ``alone_every``-th one alone, takes the shortcut and gives exactly
    ``PositionProvider``'s ranges for exactly the nodes under those statements."""
    module = cst.parse_module(source)
    text = source.decode(module.encoding)
    expected = reference(module)
    ours = statement_positions(module, text, module.body)
    assert ours is not None, "the shortcut was not taken"
    covered = set().union(*(under(s, expected) for s in module.body)) if module.body else set()
    assert {id(node) for node in ours} == covered
    for node in ours:
        assert ours[node] == expected[node], module.code_for_node(node)
    for statement in module.body[::alone_every]:
        alone = statement_positions(module, text, [statement])
        assert alone is not None, module.code_for_node(statement)
        assert {id(node) for node in alone} == under(statement, expected)
        for node in alone:
            assert alone[node] == expected[node], module.code_for_node(node)


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_positions_equal_position_provider(file: Path) -> None:
    module = cst.parse_module(file.read_bytes())
    ours = node_positions(module)
    expected = reference(module)
    assert len(ours) == len(expected)
    for node, where in expected.items():
        assert ours[node] == where, module.code_for_node(node)


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_statement_positions_equal_position_provider(file: Path) -> None:
    assert_statements_exact(file.read_bytes())


@pytest.mark.parametrize(
    "file", STDLIB_SAMPLE, ids=[str(f.relative_to(STDLIB)) for f in STDLIB_SAMPLE]
)
def test_statement_positions_on_the_standard_library(file: Path) -> None:
    source = file.read_bytes()
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, SyntaxError, UnicodeDecodeError, LookupError, ValueError):
        # Test data broken on purpose (a bad coding cookie): CPython rejects it too.
        with pytest.raises((SyntaxError, ValueError)):
            compile(source, str(file), "exec", dont_inherit=True)
        return
    assert dict(node_positions(module)) == dict(reference(module))
    if declines(source, module):
        # Some copies of the stdlib keep old form feeds (Debian's email/__init__.py).
        assert statement_positions(module, source.decode(module.encoding), module.body) is None
        return
    # All statements at once; alone, a few spread over the file.
    assert_statements_exact(source, alone_every=max(1, len(module.body) // 4))


def declines(source: bytes, module: cst.Module) -> bool:
    """Text the shortcut declines by design: a form feed or a line that starts
    with a backslash continuation (libcst does not write them back where they
    were), a carriage return that does not end a line, or a comment after the last
    statement with no final newline."""
    return (
        (not module.has_trailing_newline and bool(module.footer))
        or b"\x0c" in source
        or re.search(rb"^[ \t]*\\", source, re.MULTILINE) is not None
        or source.count(b"\r") != source.count(b"\r\n")
    )


LAYOUTS = {
    "header comment": b"#!/usr/bin/env python\n# header\n\nimport os\n\n\nx = os.sep  # note\n",
    "bom": b"\xef\xbb\xbf# comment\nimport os\nx = os.path.join('a', 'b')\n",
    "crlf": b"x = (1 +\r\n     2)\r\nif x:\\\r\n    pass\r\n\r\ndef f():\r\n    return '''a\r\nb'''\r\n",
    "decorators": (
        b"import functools\n\n\n@functools.cache\n# between\n@functools.wraps(\n    print\n)\n"
        b"async def f(a,\n            b):\n    return a\n\n\n@dataclass\nclass C:\n    x: int = 1\n"
    ),
    "semicolons": b"a = 1; b = 2\nc = a; d = b; print(c, d)\nif a: b = 3; c = 4\n",
    "no trailing newline": b"import os\nx = os.sep\ny = 1",
    "no trailing newline, crlf": b"import os\r\nx = os.sep\r\ny = 1",
    "no trailing newline, repeated": b"x = 1\nx = 1\nx = 1",
    "repeated statements": (
        b"x = f()\n\n\ndef g():\n    return x\n\n\nx = f()\n\n\ndef g():\n    return x\n"
    ),
    "repeated, crlf and bom": b"\xef\xbb\xbfx = f()\r\nx = f()\r\n\r\nx = f()\r\n",
    "continuation and strings": (
        b"s = '''\nx = 1\n'''\nx = 1\nt = f'''{x}\nx = 1\n'''\nu = \\\n    1\nx = 1\n"
    ),
    "tabs": b"import os\n\nif os:\n\tx = 1\n\ty = 2\n",
    "comments after a block": b"def f():\n    pass\n    # inside\n# outside\n\nx = 1\n",
    "latin-1 cookie": "# -*- coding: latin-1 -*-\nx = 'é'; y = x\n".encode("latin-1"),
    "empty lines only": b"\n\n\n",
}


@pytest.mark.parametrize("source", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_statement_positions_on_layouts(source: bytes) -> None:
    assert_statements_exact(source)


def test_repeated_code_is_placed_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file made of the sample services twice over, as the benchmark builds it:
    most statements occur twice in the text, so Python's parser decides."""
    services = sorted((ROOT / "fixtures" / "apps").glob("*/**/services/*.py"))
    assert services
    text = "\n\n".join([p.read_text(encoding="utf-8") for p in services] * 2)
    asked: list[int] = []

    def python_lines(module: cst.Module, text: str) -> list[int] | None:
        asked.append(1)
        return original(module, text)

    original = positions._python_lines
    monkeypatch.setattr(positions, "_python_lines", python_lines)
    assert_statements_exact(text.encode())
    assert asked


@pytest.mark.parametrize(
    "source",
    [
        b"x = 1\ry = 2\r",  # a lone CR counts as a line for the pass, not for str.count
        b"def f():\n    pass\n# footer comment",  # a footer that loses its final newline
        # libcst does not write these back: the lines or columns after them move.
        b"x = 1\n\\\nx = 1\n",
        b"x = 1\n\x0cy = 2\n",
    ],
    ids=["lone cr", "footer without newline", "backslash line", "form feed"],
)
def test_statement_positions_decline_what_they_cannot_prove(source: bytes) -> None:
    module = cst.parse_module(source)
    assert statement_positions(module, source.decode(module.encoding), module.body) is None
    assert dict(node_positions(module)) == dict(reference(module))


def test_positions_handle_crlf_and_continuations() -> None:
    source = b"x = (1 +\r\n     2)\r\nif x:\\\r\n    pass\r\n"
    module = cst.parse_module(source)
    assert dict(node_positions(module)) == dict(reference(module))


RULE_FIXTURES = all_fixtures()


@pytest.mark.parametrize("file", RULE_FIXTURES, ids=[f.name for f in RULE_FIXTURES])
def test_findings_are_placed_as_by_the_whole_module_pass(
    file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the analyzer's findings are the same whether positions come from
    the reported statements or from the whole module, and the shortcut is taken."""
    fixture = load(file)
    taken: list[bool] = []

    def counted(
        module: cst.Module,
        text: str,
        statements: Collection[cst.CSTNode],
        memo: StatementMemo | None = None,
    ) -> Positions | None:
        found = statement_positions(module, text, statements, memo)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(analyzer, "statement_positions", counted)
    ours = analyze(fixture.source, fixture.path, fixture.config, apply_noqa=False)
    monkeypatch.setattr(analyzer, "statement_positions", lambda *args: None)
    whole = analyze(fixture.source, fixture.path, fixture.config, apply_noqa=False)
    assert ours.findings == whole.findings
    assert ours.errors == whole.errors
    # SL001's findings come from the tokenizer's comments, not from the tree: they
    # need no positions.
    if any(f.code != "SL001" for f in ours.findings):
        assert taken == [True]
    else:
        assert taken == []


# Lines spliced into fixtures by the mutation test: blank and comment lines,
# continuations, strings holding code, repeats (libcst's known losses included, so
# that declining is tested too).
_SPLICES = [
    "\n",
    "   \n",
    "\t\n",
    "#c\n",
    "    # indented\n",
    "\\\n",
    "  \\\n",
    "\x0c\n",
    "pass\n",
    "x = 1\n",
    "x = 1; y = 2\n",
    "if x: y = 1\n",
    '"""\nx = 1\n"""\n',
    "x = 1 \\\n    + 2\n",
]


def test_statement_positions_on_mutated_fixtures() -> None:
    """Fixtures with lines spliced in, blocks repeated, lines deleted, CRLF and no
    final newline: wherever libcst parses the result, the shortcut gives exactly
    ``PositionProvider``'s ranges, or declines."""
    rng = random.Random(20240601)
    sources = [f.read_text(encoding="utf-8") for f in FILES]
    taken = 0
    for _ in range(600):
        lines = rng.choice(sources).splitlines(keepends=True)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(lines) + 1)
            roll = rng.random()
            if roll < 0.5 or not lines:
                lines.insert(at, rng.choice(_SPLICES))
            elif roll < 0.8:
                first = rng.randrange(len(lines))
                lines[at:at] = lines[first : first + rng.randint(1, 8)]
            else:
                del lines[rng.randrange(len(lines))]
        text = "".join(lines)
        if rng.random() < 0.2:
            text = text.replace("\n", "\r\n")
        if rng.random() < 0.1:
            text = text.rstrip("\r\n")
        try:
            module = cst.parse_module(text)
        except Exception:
            continue  # not Python any more
        expected = reference(module)
        chosen = [s for s in module.body if rng.random() < 0.3]
        for statements in (module.body, chosen):
            ours = statement_positions(module, text, statements)
            if ours is None:
                continue
            taken += 1
            for node in ours:
                assert ours[node] == expected[node], (text, module.code_for_node(node))
    assert taken > 300


class _CountingSpans(dict[cst.CSTNode, tuple[int, int, int, int]]):
    """A part's spans that count the lookups made in them."""

    probes = 0

    def get(self, key: cst.CSTNode, default: object = None) -> object:  # type: ignore[override]
        _CountingSpans.probes += 1
        return super().get(key, default)

    def __getitem__(self, key: cst.CSTNode) -> tuple[int, int, int, int]:
        _CountingSpans.probes += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("functions", [50, 400])
def test_lookups_do_not_scan_every_part(functions: int) -> None:
    """A file with many findings has one part per statement holding one: a lookup
    must go to its node's part, not try the parts one by one (that was quadratic:
    a generated file of 20 000 functions took minutes). Counted, not timed."""
    source = "".join(
        f"async def handler_{i}(s):\n    await s.execute('SELECT {i}')\n\n\n"
        for i in range(functions)
    )
    module = cst.parse_module(source)
    found = statement_positions(module, source, module.body)
    assert found is not None
    parts = [(_CountingSpans(spans), shift) for spans, shift in found._parts]
    counted = Positions(parts)  # type: ignore[arg-type]
    nodes = list(counted)
    _CountingSpans.probes = 0
    for node in nodes:
        assert counted[node] == found[node]
    assert _CountingSpans.probes <= len(nodes)
