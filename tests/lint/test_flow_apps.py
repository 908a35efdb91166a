"""The flow sample apps: ``flow_antipatterns`` (a FastAPI router, services and a
background import batch, full of transaction, lifetime, concurrency and raw-SQL
mistakes) gives exactly its expected findings and exercises every flow rule; its
clean twin ``flow_clean`` (built on ``session_runtime``) gives none; and fixing
the antipatterns app yields code that compiles, re-lints without a fixable finding
and is stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.fixes.apply import fix_source, fixable
from session_lint.project.config import Config, load_config_file, with_project_index
from session_lint.rules import ALL_RULES

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "fixtures" / "apps"
BAD, CLEAN = APPS / "flow_antipatterns", APPS / "flow_clean"
FLOW_CODES = sorted(r.code for r in ALL_RULES if r.code[:3] in ("SL3", "SL4", "SL5"))


def _sources(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def _config(root: Path) -> Config:
    """The app's pyproject.toml when it has one, and its project index, as the CLI
    builds them."""
    pyproject = root / "pyproject.toml"
    config = load_config_file(pyproject) if pyproject.is_file() else Config(root=str(root))
    return with_project_index(config, use_cache=False)


def _findings(root: Path) -> list[str]:
    out: list[str] = []
    config = _config(root)
    for rel, source in _sources(root).items():
        result = analyze(source, rel, config)
        assert result.errors == []
        out.extend(f"{rel}:{f.line}:{f.column}: {f.code}" for f in result.findings)
    return out


def _expected(root: Path) -> list[str]:
    text = (root / "expected.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line]


def test_antipatterns_give_exactly_the_expected_findings() -> None:
    assert _findings(BAD) == _expected(BAD)


def test_antipatterns_exercise_every_flow_rule() -> None:
    found = {line.rsplit(" ", 1)[-1] for line in _expected(BAD)}
    assert sorted(set(FLOW_CODES) - found) == []


def test_clean_twin_has_no_findings() -> None:
    assert _expected(CLEAN) == []
    assert _findings(CLEAN) == []


@pytest.mark.parametrize("rel", sorted(_sources(BAD)))
def test_fixes_compile_relint_and_settle(rel: str) -> None:
    source = (BAD / rel).read_bytes()
    config = _config(BAD)
    outcome = fix_source(source, rel, config, unsafe=True)
    assert outcome.errors == []
    compile(outcome.source, rel, "exec", dont_inherit=True)
    after = analyze(outcome.source, rel, config)
    assert fixable(after.findings, unsafe=True) == []
    assert not fix_source(outcome.source, rel, config, unsafe=True).changed
