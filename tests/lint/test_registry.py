"""The registry, the rule modules, their fixtures and their docs agree (docs/architecture.md, "The rule contract").

Docs are tests: each rule's ``## Example`` block fires the rule and its
``Use instead:`` block does not, analysed as ``app/example.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.finding import FixAvailability
from session_lint.project.config import KNOWN_KEYS, Config
from session_lint.rules import ALL_RULES, RULES_BY_CODE, Rule
from tests.lint.fixture_files import RULE_FIXTURES, all_fixtures, config_from_headers, load

RULES_DIR = Path(__file__).resolve().parents[2] / "session_lint" / "rules"
# ruff's order, plus "Where it runs" (the rule's file roles, required: see
# test_roles.py); Known problems, Options, Fix safety and References are optional.
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
# A file that does not parse cannot silence its error with a noqa comment (as in
# ruff), so the fixture harness's noqa run cannot apply to SL000.
NO_FIXTURE = frozenset({"SL000"})
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_IDS = [r.code for r in ALL_RULES]


def _module_files() -> list[Path]:
    return sorted(RULES_DIR.glob("SL[0-9][0-9][0-9]_*.py"))


# -- registry ---------------------------------------------------------------------
def test_every_rule_module_is_registered_once() -> None:
    registered = [rule.__module__.rsplit(".", 1)[1] for rule in ALL_RULES]
    assert len(registered) == len(set(registered)), "a module registered twice"
    assert sorted(registered) == [p.stem for p in _module_files()]


def test_codes_unique_and_sorted() -> None:
    codes = [rule.code for rule in ALL_RULES]
    assert len(codes) == len(set(codes))
    assert codes == sorted(codes)
    assert all(re.fullmatch(r"SL\d{3}", code) for code in codes)
    assert set(RULES_BY_CODE) == set(codes)


def test_names_kebab_case_and_unique() -> None:
    names = [rule.name for rule in ALL_RULES]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z]+(?:-[a-z]+)*", name), name


@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_module_is_named_for_code_and_name(rule: type[Rule]) -> None:
    module = rule.__module__.rsplit(".", 1)[1]
    assert module == f"{rule.code}_{rule.name.replace('-', '_')}"


@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_rule_has_message_and_prefilter(rule: type[Rule]) -> None:
    assert rule.message.strip()
    if rule.code not in NO_FIXTURE:
        # The prefilter must name something: an empty tuple would skip every file.
        # A rule whose triggers come from the project (SL306: the project's own
        # helpers) names them under its fixture's project instead.
        if rule.prefilter.__func__ is Rule.prefilter.__func__:  # type: ignore[attr-defined]
            assert rule.tokens, f"{rule.code} declares no prefilter tokens"
        else:
            config = load(RULE_FIXTURES / f"{rule.code}.py").config
            assert all(all(clause) for clause in rule.prefilter(config))
            assert rule.prefilter(config), f"{rule.code}: no prefilter clause"


# -- fixtures ------------------------------------------------------------------------
# SL000 is left out on purpose (see NO_FIXTURE); test_no_fixture_for_syntax_error
# holds it to that.
@pytest.mark.parametrize(
    "rule", [r for r in ALL_RULES if r.code not in NO_FIXTURE], ids=lambda r: r.code
)
def test_rule_has_a_fixture(rule: type[Rule]) -> None:
    assert (RULE_FIXTURES / f"{rule.code}.py").is_file()


def test_no_fixture_for_syntax_error() -> None:
    # Its cases (syntax errors, bad encodings, binary and too-deep files) are in
    # test_bad_input.py and test_cli.py; a fixture file could not hold them.
    assert NO_FIXTURE == {"SL000"}
    assert not list(RULE_FIXTURES.glob("SL000*.py"))


@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_fixed_file_exactly_when_rule_fixes(rule: type[Rule]) -> None:
    for fixture in all_fixtures():
        if fixture.name[:5] != rule.code:
            continue
        fixes = rule.fix_availability is not FixAvailability.NONE and not load(fixture).no_fix
        fixed = fixture.with_name(fixture.stem + ".fixed.py")
        assert fixed.is_file() == fixes, f"{fixed.name} {'missing' if fixes else 'unexpected'}"


def test_every_fixture_belongs_to_a_registered_rule() -> None:
    for path in RULE_FIXTURES.glob("*.py"):
        assert path.name[:5] in RULES_BY_CODE, f"{path.name}: no such rule"
        if path.name.endswith(".fixed.py"):
            source = path.with_name(path.name[: -len(".fixed.py")] + ".py")
            assert source.is_file(), f"{path.name} without {source.name}"


# -- docs ------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_docs_sections(rule: type[Rule]) -> None:
    titles = re.findall(r"^## (.+)$", rule.docs(), re.M)
    assert titles[:2] == ["What it does", "Why is this bad?"]
    assert "Example" in titles
    assert all(t in SECTIONS for t in titles), f"unknown section in {titles}"
    assert len(titles) == len(set(titles)), "a section appears twice"
    assert titles == sorted(titles, key=SECTIONS.index), "sections out of ruff's order"
    assert "Use instead:" in rule.doc_section("Example")
    has_fix = rule.fix_availability is not FixAvailability.NONE
    assert ("Fix safety" in titles) == has_fix
    assert rule.summary()


@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_options_are_real_config_keys(rule: type[Rule]) -> None:
    section = rule.doc_section("Options")
    entries = [line for line in section.splitlines() if line.startswith("- ")]
    assert bool(entries) == bool(section), f"{rule.code}: Options entries look like - `key`"
    for line in entries:
        match = re.match(r"- `([a-z-]+)`", line)
        assert match, f"{rule.code}: Options entries look like - `key`: {line!r}"
        assert match.group(1) in KNOWN_KEYS, f"{rule.code}: no config key {match.group(1)!r}"


def _examples(rule: type[Rule]) -> tuple[str, str]:
    bad, _, good = rule.doc_section("Example").partition("Use instead:")
    bad_blocks, good_blocks = _BLOCK.findall(bad), _BLOCK.findall(good)
    assert len(bad_blocks) == 1, f"{rule.code}: one ```python block under ## Example"
    assert good_blocks, f"{rule.code}: a ```python block after Use instead:"
    return bad_blocks[0], good_blocks[0]


def _config_for(block: str, rule: type[Rule]) -> Config:
    """A block may start with ``# config: <toml line>`` and ``# requires: <requirement>``
    headers, like the fixtures; the rule is selected by its code (opt-in rules too)."""
    config = config_from_headers(block)
    return config.with_overrides(extend_select=(*config.extend_select, rule.code))


@pytest.mark.parametrize("rule", ALL_RULES, ids=_IDS)
def test_example_fires_and_use_instead_does_not(rule: type[Rule]) -> None:
    bad, good = _examples(rule)
    fired = analyze(bad.encode(), "app/example.py", _config_for(bad, rule), [rule])
    assert fired.errors == []
    assert [f.code for f in fired.findings if f.code == rule.code], "Example does not fire"
    clean = analyze(good.encode(), "app/example.py", _config_for(good, rule), [rule])
    assert clean.errors == []
    assert clean.findings == [], "Use instead fires"


# -- engine modules ----------------------------------------------------------------------
@pytest.mark.parametrize("code", ["SL101", "SL102", "SL104"])
def test_engine_module_rules_are_silent_in_engine_modules(code: str) -> None:
    """Everything these fixtures flag is allowed where engines are built."""
    source = (RULE_FIXTURES / f"{code}.py").read_bytes()
    assert b"# path:" not in source and b"# config:" not in source
    for path in ("app/db/engine.py", "app/database.py", "src/app/session/factory.py"):
        result = analyze(source, path, Config(), [RULES_BY_CODE[code]])
        assert result.findings == [], path
