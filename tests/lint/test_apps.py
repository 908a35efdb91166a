"""Sample apps under fixtures/apps: each one with an ``expected.txt`` is linted file by
file and must give exactly the listed findings (``path:line:col: CODE``, paths
relative to the app). An empty list means the app must be clean.

The config comes from the app's own pyproject.toml when it has one, otherwise the
defaults with the app directory as root (so ``db/engine.py`` is an engine module),
with the app's project index, as the CLI builds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.project.config import Config, load_config_file, with_project_index

APPS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "apps"
APPS = sorted(p.parent for p in APPS_DIR.glob("*/expected.txt"))


def lint_app(app: Path) -> tuple[list[str], list[str]]:
    """(``path:line:col: CODE`` lines in path/position order, internal errors)."""
    pyproject = app / "pyproject.toml"
    config = load_config_file(pyproject) if pyproject.is_file() else Config(root=str(app))
    # As the CLI does: the project index of the app (its own factories and types).
    config = with_project_index(config, use_cache=False)
    found: list[str] = []
    errors: list[str] = []
    for file in sorted(app.rglob("*.py")):
        rel = file.relative_to(app).as_posix()
        if config.is_excluded(str(file)):
            continue
        result = analyze(file.read_bytes(), str(file), config)
        errors.extend(result.errors)
        found.extend(f"{rel}:{f.line}:{f.column}: {f.code}" for f in result.findings)
    return found, errors


def expected(app: Path) -> list[str]:
    lines = (app / "expected.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_there_are_apps() -> None:
    names = {app.name for app in APPS}
    assert {"construction_antipatterns", "construction_clean"} <= names


@pytest.mark.parametrize("app", APPS, ids=[app.name for app in APPS])
def test_app_findings_are_exactly_the_expected_ones(app: Path) -> None:
    found, errors = lint_app(app)
    assert errors == []
    assert found == expected(app)


@pytest.mark.parametrize("app", APPS, ids=[app.name for app in APPS])
def test_expected_file_is_sorted_by_file_and_position(app: Path) -> None:
    def key(line: str) -> tuple[str, int, int, str]:
        location, code = line.rsplit(" ", 1)
        path, row, col, _ = location.split(":")
        return (path, int(row), int(col), code)

    lines = expected(app)
    assert lines == sorted(lines, key=key)


def test_antipatterns_app_shows_every_construction_rule() -> None:
    codes = {line.rsplit(" ", 1)[1] for line in expected(APPS_DIR / "construction_antipatterns")}
    assert {"SL101", "SL102", "SL103", "SL104", "SL105"} <= codes
