"""The language server's re-parse of an edited buffer (session_lint/editors/reparse.py)
gives exactly the tree a full parse gives, or declines: checked on edits of every
line of the rule fixtures and the sample apps."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import libcst as cst
import pytest

from session_lint.editors.reparse import Parsed, parsed, reparse
from session_lint.editors.resident import WarmAnalysis
from session_lint.project.config import Config

ROOT = Path(__file__).resolve().parents[2]
# Every fixture but SL000's, which does not parse on purpose.
SOURCES = sorted(
    p
    for p in [*(ROOT / "fixtures" / "rules").glob("*.py"), *(ROOT / "fixtures" / "apps").rglob("*.py")]
    if not p.name.endswith(".fixed.py")
    and not p.name.startswith("SL000")
    and p.read_text(encoding="utf-8").count("\n") >= 10  # empty __init__.py files
)

Edit = Callable[[list[str], int], list[str]]
_EDITS_PER_FILE = 12


def _edits() -> Iterator[tuple[str, Edit]]:
    yield "type at the end of the line", lambda lines, i: [
        *lines[:i], lines[i].rstrip("\n") + "  # x\n", *lines[i + 1 :]
    ]
    yield "insert a statement", lambda lines, i: [*lines[:i], "x = 1\n", *lines[i:]]
    yield "insert an indented line", lambda lines, i: [*lines[:i], "    pass\n", *lines[i:]]
    yield "insert a comment", lambda lines, i: [*lines[:i], "# note\n", *lines[i:]]
    yield "insert an indented comment", lambda lines, i: [*lines[:i], "    # note\n", *lines[i:]]
    yield "delete the line", lambda lines, i: [*lines[:i], *lines[i + 1 :]]
    yield "join with the next line", lambda lines, i: [
        *lines[:i], lines[i].rstrip("\n") + (lines[i + 1] if i + 1 < len(lines) else ""),
        *lines[i + 2 :],
    ]
    yield "open a bracket", lambda lines, i: [*lines[:i], lines[i].rstrip("\n") + " (\n", *lines[i + 1 :]]


def _full(text: str) -> cst.Module | None:
    try:
        return cst.parse_module(text.encode("utf-8"))
    except Exception:
        return None


def _start(text: str) -> Parsed:
    module = _full(text)
    assert module is not None
    known = parsed(text, module)
    assert known is not None, "the spans of a full parse lay out the text"
    return known


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_spliced_parse_is_the_full_parse(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    previous = _start(text)
    lines = text.splitlines(keepends=True)
    spliced_count = 0
    # A dozen edits per file, at lines and of kinds drawn with the file's name as
    # the seed: the same every run, and different from file to file.
    rng = random.Random(path.name)
    edits = list(_edits())
    for _ in range(_EDITS_PER_FILE):
        name, edit = rng.choice(edits)
        i = rng.randrange(len(lines))
        edited = "".join(edit(lines, i))
        result = reparse(previous, edited)
        if result is None:
            continue
        spliced_count += 1
        full = _full(edited)
        where = f"{name} at line {i + 1}"
        assert full is not None, f"{where}: spliced, but the buffer does not parse"
        assert result.module.code == edited, where
        assert result.module.deep_equals(full), where
        assert parsed(edited, result.module) == Parsed(edited, result.module, result.spans), where
    assert spliced_count > 0 or len(previous.spans) < 8, "no edit took the short way"


def test_a_chain_of_edits_stays_exact() -> None:
    """Each splice is the start of the next, as in an editor session."""
    text = (ROOT / "fixtures" / "rules" / "SL305.py").read_text(encoding="utf-8")
    current = _start(text)
    lines = text.splitlines(keepends=True)
    taken = 0
    for i in range(len(lines) - 1, 20, -7):
        lines = [*lines[:i], lines[i].rstrip("\n") + "  # edited\n", *lines[i + 1 :]]
        edited = "".join(lines)
        result = reparse(current, edited)
        full = _full(edited)
        assert full is not None
        if result is None:
            current = _start(edited)
            continue
        taken += 1
        assert result.module.deep_equals(full)
        current = result
    assert taken > 0


def test_the_language_server_path_gives_the_full_analysis(tmp_path: Path) -> None:
    """WarmAnalysis with ``incremental=True`` (what the language server uses) finds
    what a full analysis finds, edit after edit."""
    source = (ROOT / "fixtures" / "apps" / "flow_antipatterns" / "app" / "api" / "orders.py")
    text = source.read_text(encoding="utf-8")
    warm = WarmAnalysis()
    config = Config()
    path = str(tmp_path / "orders.py")
    lines = text.splitlines(keepends=True)
    for i in (len(lines) - 1, len(lines) // 2, 10):
        lines = [*lines[:i], "\n", "x = 1\n", *lines[i:]]
        edited = "".join(lines).encode("utf-8")
        fast = warm.analyze(edited, path, config, incremental=True)
        slow = warm.analyze(edited, path, config)
        assert [f.sort_key() for f in fast.findings] == [f.sort_key() for f in slow.findings]
        assert fast.findings, "the sample keeps its findings"


def test_kept_statements_memo_follows_the_edits(tmp_path: Path) -> None:
    """What the language server keeps per statement between edits (positions, the
    string literals SL204 reads for a pooler URL: session_lint/core/memo.py) never
    outlives the statement: an edit that drops the pooler URL drops the finding, and
    every step equals a full analysis."""
    head = "from sqlalchemy.ext.asyncio import create_async_engine\n\nimport settings\n\n"
    url = 'URL = "postgresql+asyncpg://app@db.example:{port}/app"\n\n\n'
    tail = "def make():\n    return create_async_engine(settings.url)\n"
    warm = WarmAnalysis()
    config = Config()
    path = str(tmp_path / "db.py")
    steps = [
        head + url.format(port=6543) + tail,
        head + url.format(port=6543) + "\n\n" + tail,  # lines before the finding move
        head + url.format(port=5432) + "\n\n" + tail,  # the pooler URL is gone
        head + url.format(port=6543) + "\n\n" + tail + "\n\nx = 1\n",
    ]
    seen = []
    for text in steps:
        fast = warm.analyze(text.encode(), path, config, incremental=True)
        slow = warm.analyze(text.encode(), path, config)
        assert [f.sort_key() for f in fast.findings] == [f.sort_key() for f in slow.findings]
        seen.append([(f.code, f.line) for f in fast.findings if f.code == "SL204"])
    assert seen[0] and seen[1] and not seen[2] and seen[3]
    assert seen[0][0][1] + 2 == seen[1][0][1]  # the finding moved down two lines
