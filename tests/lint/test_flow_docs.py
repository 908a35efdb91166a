"""The flow rules' docs are tests: ``## Example`` fires the rule, ``Use instead:`` does not,
and the sections come in ruff's order."""

from __future__ import annotations

import re

import pytest

from session_lint.analyzer import analyze
from session_lint.config import Config
from session_lint.finding import FixAvailability
from session_lint.rules import ALL_RULES, Rule

FLOW_RULES = [r for r in ALL_RULES if r.code[:3] in ("SL3", "SL4", "SL5")]
SECTIONS = (
    "What it does",
    "Why is this bad?",
    "Known problems",
    "Example",
    "Options",
    "Where it runs",
    "Fix safety",
    "References",
)
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples(rule: type[Rule]) -> tuple[str, str]:
    section = rule.doc_section("Example")
    bad, _, good = section.partition("Use instead:")
    bad_blocks, good_blocks = _BLOCK.findall(bad), _BLOCK.findall(good)
    assert bad_blocks and good_blocks, f"{rule.code}: Example and Use instead blocks"
    return bad_blocks[0], good_blocks[0]


@pytest.mark.parametrize("rule", FLOW_RULES, ids=[r.code for r in FLOW_RULES])
def test_example_fires_and_use_instead_does_not(rule: type[Rule]) -> None:
    bad, good = _examples(rule)
    config = Config(extend_select=(rule.code,))  # opt-in rules too
    found = analyze(bad.encode(), "app/service.py", config, [rule])
    assert found.errors == []
    assert [f.code for f in found.findings] != [], f"{rule.code}: Example does not fire"
    clean = analyze(good.encode(), "app/service.py", config, [rule])
    assert clean.errors == []
    assert clean.findings == [], f"{rule.code}: Use instead fires"


@pytest.mark.parametrize("rule", FLOW_RULES, ids=[r.code for r in FLOW_RULES])
def test_sections_in_order(rule: type[Rule]) -> None:
    titles = re.findall(r"^## (.+)$", rule.docs(), re.M)
    assert titles[:2] == ["What it does", "Why is this bad?"]
    assert titles == sorted(titles, key=SECTIONS.index)
    assert ("Fix safety" in titles) == (rule.fix_availability is not FixAvailability.NONE)
    assert re.fullmatch(r"[a-z]+(?:-[a-z]+)*", rule.name)
