"""The README's rule table is the registry: same codes, names and fix availability."""

from __future__ import annotations

import re

from session_lint.finding import FixAvailability
from session_lint.rules import ALL_RULES
from tests.lint.fixture_files import ROOT

ROW = re.compile(r"^\| (SL\d{3}) \| ([a-z0-9-]+) \| (.+?) \| (.+?) \|$", re.M)


def test_readme_rule_table_matches_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {code: (name, fix.strip()) for code, name, _, fix in ROW.findall(readme)}
    assert list(rows) == [rule.code for rule in ALL_RULES]
    for rule in ALL_RULES:
        name, fix = rows[rule.code]
        assert name == rule.name, rule.code
        has_fix = rule.fix_availability is not FixAvailability.NONE
        assert (fix != "—") == has_fix, f"{rule.code}: README says fix {fix!r}"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/test" in readme
    assert (ROOT / "scripts" / "test").exists()
    assert "exec ./scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    sample = re.search(r"session-lint (fixtures/apps/\S+)", readme)
    assert sample is not None and (ROOT / sample.group(1)).is_dir()
