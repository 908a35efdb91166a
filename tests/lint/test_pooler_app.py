"""The pooler_cargo_cult sample app: a FastAPI backend "fixed for Supavisor" the
cargo-cult way. Its findings are the expected ones, and ``--fix --unsafe-fixes``
with every rule turns it into ``pooler_cargo_cult.fixed``, which compiles,
re-lints without a fixable finding, and stays unchanged on a second fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.fixes.apply import fix_source, fixable
from session_lint.project.config import Config, load_config_file, with_project_index

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "fixtures" / "apps" / "pooler_cargo_cult"
FIXED = APP.with_name(APP.name + ".fixed")


def _config(root: Path) -> Config:
    """The app's pyproject.toml (its dependencies decide which fixes may import
    what) and its project index, as the CLI builds them."""
    return with_project_index(load_config_file(root / "pyproject.toml"), use_cache=False)


def _sources(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def _findings(root: Path) -> list[str]:
    out: list[str] = []
    for rel, source in _sources(root).items():
        result = analyze(source, rel, _config(root))
        assert result.errors == []
        out.extend(f"{rel}:{f.line}:{f.column}: {f.code}" for f in result.findings)
    return out


def test_findings_are_the_expected_ones() -> None:
    expected = (APP / "expected.txt").read_text(encoding="utf-8").split("\n")
    assert _findings(APP) == [line for line in expected if line]


def test_fix_gives_the_fixed_tree(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    work = tmp_path / APP.name
    shutil.copytree(APP, work)
    for rel, source in _sources(work).items():
        outcome = fix_source(source, rel, _config(work), unsafe=True)
        assert outcome.errors == []
        (work / rel).write_bytes(outcome.source)
    fixed = _sources(work)
    if request.config.getoption("--update-fixed"):
        shutil.rmtree(FIXED, ignore_errors=True)
        for rel, data in fixed.items():
            (FIXED / rel).parent.mkdir(parents=True, exist_ok=True)
            (FIXED / rel).write_bytes(data)
    assert fixed == _sources(FIXED)


@pytest.mark.parametrize("rel", sorted(_sources(FIXED)) if FIXED.exists() else [])
def test_fixed_tree_compiles_relints_and_is_stable(rel: str) -> None:
    source = (FIXED / rel).read_bytes()
    compile(source, rel, "exec", dont_inherit=True)
    result = analyze(source, rel, _config(FIXED))
    assert fixable(result.findings, unsafe=False) == []
    again = fix_source(source, rel, _config(FIXED), unsafe=True)
    assert again.errors == []
    assert not again.changed


def test_what_the_fix_leaves_is_only_unfixable() -> None:
    # The pooler-refused server_settings keys need a decision (ALTER ROLE, SET LOCAL).
    assert _findings(FIXED) == [
        "app/db/engine.py:30:13: SL203",
        "app/db/engine.py:31:13: SL203",
    ]
