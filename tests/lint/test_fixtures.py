"""The fixture harness: every rule fixture, three ways (docs/architecture.md, "The rule contract").

(a) as written: exactly the marked lines are found, with the marked codes;
(b) with every marker turned into ``# noqa: CODE``: nothing is found;
(c) fixed with ``--fix --unsafe-fixes``: equal to ``SLxxx.fixed.py``, which parses,
    keeps no fixable finding of the rule, and is unchanged by a second fix; or, for a
    rule without fixes or a fixture marked ``# fix: none``, unchanged.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from session_lint.analyzer import analyze
from session_lint.finding import FixAvailability
from session_lint.fixes.apply import fix_source, fixable
from session_lint.rules import RULES_BY_CODE
from tests.lint.fixture_files import all_fixtures, load, with_noqa

FIXTURES = all_fixtures()


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.mark.parametrize("file", FIXTURES, ids=_ids(FIXTURES))
def test_marked_lines_are_exactly_the_findings(file: Path) -> None:
    fx = load(file)
    rule = RULES_BY_CODE[fx.code]
    result = analyze(fx.source, fx.path, fx.config, [rule])
    assert result.errors == []
    found = {(f.line, f.code) for f in result.findings}
    assert sorted(found - fx.expected) == [], "unexpected findings (line, code)"
    assert sorted(fx.expected - found) == [], "missed findings (line, code)"
    assert fx.expected, "a fixture must contain at least one finding"


@pytest.mark.parametrize("file", FIXTURES, ids=_ids(FIXTURES))
def test_noqa_silences_every_marker(file: Path) -> None:
    fx = load(file)
    result = analyze(with_noqa(fx.source), fx.path, fx.config, [RULES_BY_CODE[fx.code]])
    assert result.findings == []


@pytest.mark.parametrize("file", FIXTURES, ids=_ids(FIXTURES))
def test_fix_output_matches_fixed_file(file: Path, request: pytest.FixtureRequest) -> None:
    fx = load(file)
    rule = RULES_BY_CODE[fx.code]
    outcome = fix_source(fx.source, fx.path, fx.config, [rule], unsafe=True)
    assert outcome.errors == []
    if rule.fix_availability is FixAvailability.NONE or fx.no_fix:
        assert not outcome.changed
        assert not fx.fixed_file.exists(), f"{fx.file.name} has no fix, so no {fx.fixed_file.name}"
        assert all(f.fix is None for f in analyze(fx.source, fx.path, fx.config, [rule]).findings)
        return
    if request.config.getoption("--update-fixed"):
        fx.fixed_file.write_bytes(outcome.source)
    assert fx.fixed_file.exists(), f"missing {fx.fixed_file.name} (run pytest --update-fixed)"
    assert outcome.source.decode() == fx.fixed_file.read_text(encoding="utf-8")
    assert outcome.changed, "a fixing rule's fixture must exercise its fix"
    cst.parse_module(outcome.source)
    # Re-lints without a fixable finding; what remains had no fix to begin with.
    after = analyze(outcome.source, fx.path, fx.config, [rule])
    assert fixable(after.findings, unsafe=True) == []
    before = analyze(fx.source, fx.path, fx.config, [rule])
    unfixable_before = [f for f in before.findings if f.fix is None]
    assert len(after.findings) == len(unfixable_before)
    # Idempotent: a second fix changes nothing.
    again = fix_source(outcome.source, fx.path, fx.config, [rule], unsafe=True)
    assert not again.changed


@pytest.mark.parametrize("file", FIXTURES, ids=_ids(FIXTURES))
def test_safe_fixes_alone_apply_only_safe_edits(file: Path) -> None:
    fx = load(file)
    rule = RULES_BY_CODE[fx.code]
    before = analyze(fx.source, fx.path, fx.config, [rule])
    outcome = fix_source(fx.source, fx.path, fx.config, [rule], unsafe=False)
    assert outcome.errors == []
    if not fixable(before.findings, unsafe=False):
        assert not outcome.changed
    else:
        assert outcome.changed
        assert outcome.analysis is not None
        assert fixable(outcome.analysis.findings, unsafe=False) == []
