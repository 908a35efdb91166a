"""Fuzzing the analyzer and the fix layer (hypothesis + hypothesmith).

Inputs: programs generated from Python's grammar and from libcst's node types,
and the rule fixtures with random line deletions, duplications, indent changes,
line swaps, token swaps and lines spliced in from other fixtures. For every input:
- the analyzer never raises and never reports an internal error;
- ``fix_source(..., unsafe=True)`` reports no error and its output parses with
  libcst; when CPython compiles the input, the output compiles too, re-lints
  without a fixable finding, and a second fix changes nothing.

Example counts (200 + 200 + 500, and each fixture once) keep the module at
about a minute on one core; set ``SESSION_LINT_FUZZ_SCALE=10`` for a longer,
randomised local run.
"""

from __future__ import annotations

import os
import re

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_lint.analyzer import analyze
from session_lint.core import guard
from session_lint.fixes.apply import fix_source, fixable
from session_lint.project.config import Config
from tests.lint.fixture_files import RuleFixture, all_fixtures, load

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::SyntaxWarning")]

SCALE = int(os.environ.get("SESSION_LINT_FUZZ_SCALE", "1"))
FIXTURES = [load(path) for path in all_fixtures()]
DEFAULT = Config(root=".")
# Generated programs rarely name a session: a header makes the session rules look
# at them (and the prefilter is off anyway).
HEADER = (
    "from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine\n"
    "from sqlalchemy import text\n"
)
LINES = sorted({line for f in FIXTURES for line in f.source.decode().splitlines(keepends=True)})
_TOKEN = re.compile(r"\w+|[^\w\s]")


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,  # libcst's first parse of a shape can be slow; speed is not the point
        # CI runs are reproducible; a scaled-up local run explores new inputs.
        derandomize=SCALE == 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )


def compiles(source: bytes) -> bool:
    # To bytecode, not only to an ast: some errors (a repeated keyword argument)
    # are found by the compiler, not the parser.
    try:
        compile(source, "<fuzz>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def check(source: bytes, path: str = "app/fuzz.py", config: Config = DEFAULT) -> None:
    """The properties every input must have (see the module docstring)."""
    with guard.recursion_limit():  # as the CLI runs
        _check(source, path, config)


def _check(source: bytes, path: str, config: Config) -> None:
    analysis = analyze(source, path, config, use_prefilter=False)
    assert analysis.errors == []
    outcome = fix_source(source, path, config, unsafe=True)
    assert outcome.errors == []
    if not outcome.changed:
        return
    fixed = outcome.source
    cst.parse_module(fixed)
    if not compiles(source):
        # libcst accepts some code CPython rejects (a repeated keyword argument):
        # fixes on it must not fail or break the parse, but need not converge.
        return
    assert compiles(fixed), "a fix turned valid Python into invalid Python"
    again = analyze(fixed, path, config, use_prefilter=False)
    assert again.errors == []
    assert fixable(again.findings, unsafe=True) == []
    assert fix_source(fixed, path, config, unsafe=True).source == fixed, "second fix not a no-op"


# -- generated programs -----------------------------------------------------------


@fuzz_settings(200)
@given(hypothesmith.from_grammar())
def test_grammar_programs(source: str) -> None:
    check(source.encode("utf-8", "surrogatepass"))
    check((HEADER + source).encode("utf-8", "surrogatepass"))


@fuzz_settings(200)
@given(hypothesmith.from_node())
def test_node_programs(source: str) -> None:
    check((HEADER + source).encode("utf-8", "surrogatepass"))


# -- mutated fixtures --------------------------------------------------------------


@st.composite
def mutated_fixture(draw: st.DrawFn) -> tuple[bytes, str, Config]:
    fixture = draw(st.sampled_from(FIXTURES))
    lines = fixture.source.decode().splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        operation = draw(
            st.sampled_from(
                ["delete", "duplicate", "indent", "dedent", "swap_lines", "tokens", "splice"]
            )
        )
        if operation == "delete":
            del lines[i]
        elif operation == "duplicate":
            lines.insert(i, lines[i])
        elif operation == "indent":
            lines[i] = "    " + lines[i]
        elif operation == "dedent":
            lines[i] = re.sub(r"^ {1,4}", "", lines[i])
        elif operation == "splice":
            # A line of another fixture, indented like its new neighbour: rules
            # (and their fixes) meet in the same function.
            donor = draw(st.sampled_from(LINES))
            indent = re.match(r"[ \t]*", lines[i])
            lines.insert(i, (indent.group() if indent else "") + donor.lstrip())
        elif operation == "swap_lines":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            tokens = list(_TOKEN.finditer(lines[i]))
            if len(tokens) >= 2:
                a, b = sorted(
                    draw(st.lists(st.sampled_from(tokens), min_size=2, max_size=2)),
                    key=lambda m: m.start(),
                )
                if a.start() != b.start():
                    text = lines[i]
                    lines[i] = (
                        text[: a.start()]
                        + b.group()
                        + text[a.end() : b.start()]
                        + a.group()
                        + text[b.end() :]
                    )
    return "".join(lines).encode(), fixture.path, fixture.config


@fuzz_settings(500)
@given(mutated_fixture())
def test_mutated_fixtures(case: tuple[bytes, str, Config]) -> None:
    source, path, config = case
    check(source, path, config)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.file.stem for f in FIXTURES])
def test_fixtures_unmutated(fixture: RuleFixture) -> None:
    # The baseline of the mutations: every fixture as written, with every rule on.
    check(fixture.source, fixture.path, fixture.config)
