"""The prefilter is sound: it never skips a file on which a rule would fire."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_lint.analyzer import analyze
from session_lint.core.prefilter import Called, Clause, Prefilter, prefilter_for
from session_lint.project.config import Config
from session_lint.rules import ALL_RULES, SyntaxErrorRule
from tests.lint.fixture_files import ROOT, load

RULES = [r for r in ALL_RULES if r is not SyntaxErrorRule]
FIXTURE_FILES = sorted((ROOT / "fixtures").rglob("*.py"))


def _config_for(file: Path) -> tuple[str, Config]:
    if file.parent.name == "rules":
        fx = load(file) if not file.name.endswith(".fixed.py") else None
        if fx is not None:
            return fx.path, fx.config
    return f"app/{file.name}", Config(root=".")


def test_every_fixture_file_passes_the_prefilter_of_each_rule_that_fires_on_it() -> None:
    checked = 0
    for file in FIXTURE_FILES:
        source = file.read_bytes()
        path, config = _config_for(file)
        for rule in RULES:
            unfiltered = analyze(source, path, config, [rule], use_prefilter=False)
            if unfiltered.findings:
                checked += 1
                assert prefilter_for([rule], config)(source), (file.name, rule.code)
    assert checked > 50  # the fixtures exercise every rule


def _chunks() -> tuple[list[str], list[str]]:
    """Import lines and top-level statement blocks of every rule fixture."""
    imports: list[str] = []
    blocks: list[str] = []
    for file in sorted((ROOT / "fixtures" / "rules").glob("SL*.py")):
        if file.name.startswith("SL000"):
            continue
        current: list[str] = []
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.startswith(("import ", "from ")) and not line.endswith("("):
                imports.append(line)
                continue
            if line and not line[0].isspace() and current and not line.startswith(("#", ")", "@")):
                blocks.append("\n".join(current))
                current = []
            if not line.startswith(("import ", "from ")):
                current.append(line)
        if current:
            blocks.append("\n".join(current))
    return sorted(set(imports)), blocks


IMPORTS, BLOCKS = _chunks()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    imports=st.lists(st.sampled_from(IMPORTS), max_size=12, unique=True),
    blocks=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4),
    pooler=st.sampled_from(["auto", "transaction"]),
)
def test_prefilter_loses_no_finding_on_generated_files(
    imports: list[str], blocks: list[str], pooler: str
) -> None:
    source = ("\n".join(imports) + "\n\n\n" + "\n\n\n".join(blocks) + "\n").encode()
    config = Config(root=".", pooler=pooler)
    full = analyze(source, "app/generated.py", config, use_prefilter=False)
    filtered = analyze(source, "app/generated.py", config)
    assert [(f.line, f.column, f.code) for f in filtered.findings] == [
        (f.line, f.column, f.code) for f in full.findings
    ]


class _CallsTwice:
    """A rule that may fire where the file calls its names twice in all."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def prefilter(self, config: Config) -> tuple[Clause, ...]:
        return (((Called(self.names, 2),),),)


@pytest.mark.parametrize("many", [False, True])  # searched name by name, or in the identifiers
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"a_1(x)\nb = a_1 (y)\n", True),
        (b"a_1  # a comment\n(x)\nobj.a_2(y)\n", True),
        (b"a_1(x)\n", False),  # once
        (b"xa_1(x)\nxa_1(y)\na_1x(z)\n", False),  # part of another name
        (b"a_1 = 1\nprint(a_1, a_2)\n", False),  # named, not called
    ],
)
def test_counted_calls_are_of_whole_names(source: bytes, expected: bool, many: bool) -> None:
    names = frozenset({"a_1", "a_2", *(f"other_{i}" for i in range(30 if many else 0))})
    prefilter = Prefilter([_CallsTwice(names)], Config(root="."))
    assert prefilter(source) is expected
