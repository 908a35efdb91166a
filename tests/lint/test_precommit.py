"""The pre-commit hooks, as a user gets them: ``pre-commit try-repo`` builds a
virtualenv from this repository (its working tree: try-repo commits tracked
changes to a shadow clone) and runs a hook in a throwaway git repository.

Needs git and PyPI (pre-commit pip-installs the hook's dependencies); about
10 s per hook run, most of it building the hook's virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.finding import Applicability
from session_lint.project.config import Config

ROOT = Path(__file__).resolve().parents[2]

# Unawaited `commit()` (SL403) and a plain SQL string (SL501): both have safe
# fixes, so the plain `--fix` hook rewrites them.
OFFENDING = """\
from session_runtime import get_session


async def handler():
    async with get_session() as s:
        await s.execute("SELECT 1")
        s.commit()
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user-repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "handlers.py").write_text(OFFENDING)
    git("init", "-q", cwd=repo)
    git("config", "user.email", "ci@example.invalid", cwd=repo)
    git("config", "user.name", "CI", cwd=repo)
    git("config", "commit.gpgsign", "false", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    return repo


def try_repo(
    hook: str, repo: Path, files: tuple[str, ...] = ("--files", "app/handlers.py")
) -> subprocess.CompletedProcess[str]:
    # try-repo installs into a temporary store of its own: nothing is left behind.
    env = {**os.environ, "PRE_COMMIT_COLOR": "never"}
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pre_commit",
            "try-repo",
            str(ROOT),
            hook,
            *files,
            "--verbose",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_offending_file_has_safe_fixes() -> None:
    findings = analyze(OFFENDING.encode(), "app/handlers.py", Config()).findings
    assert {f.code for f in findings} >= {"SL403", "SL501"}
    assert all(f.fix_applicability is Applicability.SAFE for f in findings)


def test_hooks(user_repo: Path) -> None:
    handlers = user_repo / "app" / "handlers.py"

    lint = try_repo("session-lint", user_repo)
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "app/handlers.py:7:9: SL403" in lint.stdout
    assert "app/handlers.py:6:25: SL501" in lint.stdout
    assert handlers.read_text() == OFFENDING  # the lint hook never writes

    fix = try_repo("session-lint-fix", user_repo)
    # pre-commit fails a hook that modified files, so the user sees the change.
    assert fix.returncode == 1, fix.stdout + fix.stderr
    assert "files were modified by this hook" in fix.stdout
    fixed = handlers.read_text()
    assert 'await s.execute(text("SELECT 1"))' in fixed
    assert "        await s.commit()\n" in fixed
    assert "from sqlalchemy import text" in fixed

    again = try_repo("session-lint", user_repo)
    assert again.returncode == 0, again.stdout + again.stderr


def test_hooks_respect_exclude(user_repo: Path) -> None:
    """pre-commit names every file; the hooks pass --force-exclude, so the
    config's exclude holds for them as for a walk."""
    (user_repo / "pyproject.toml").write_text('[tool.session-lint]\nexclude = ["legacy"]\n')
    (user_repo / "app" / "handlers.py").write_text("x = 1\n")
    legacy = user_repo / "legacy" / "old.py"
    legacy.parent.mkdir()
    legacy.write_text(OFFENDING)
    git("add", ".", cwd=user_repo)
    git("commit", "-q", "-m", "legacy code", cwd=user_repo)

    lint = try_repo("session-lint", user_repo, ("--all-files",))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "legacy/old.py" not in lint.stdout
    fix = try_repo("session-lint-fix", user_repo, ("--all-files",))
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert legacy.read_text() == OFFENDING
