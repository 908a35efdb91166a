"""A real editor: Neovim, headless, with a minimal config that starts
``session-lint server`` (``tests/lint/editors/neovim_init.lua``). Its diagnostics
must be the CLI's findings. Neovim is installed by ``scripts/test``; a missing
``nvim`` is a failure, not a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lint.fixture_files import RULE_FIXTURES, load
from tests.lint.lsp_client import SESSION_LINT, cli_json, fixture_project

INIT = Path(__file__).parent / "editors" / "neovim_init.lua"
# A fixture of each family, with findings on lines holding non-ASCII text too.
CASES = ["SL101", "SL205", "SL301", "SL403", "SL502"]


@pytest.mark.parametrize("stem", CASES)
def test_neovim_shows_the_cli_findings(stem: str, tmp_path: Path) -> None:
    nvim = shutil.which("nvim")
    assert nvim is not None, "Neovim is missing: scripts/test installs it (apt-get install neovim)"
    root = tmp_path / "project"
    path = fixture_project(load(RULE_FIXTURES / f"{stem}.py"), root)
    output = tmp_path / "diagnostics.txt"
    env = {
        **os.environ,
        "SESSION_LINT": SESSION_LINT,
        "SESSION_LINT_FILE": str(path),
        "SESSION_LINT_ROOT": str(root),
        "SESSION_LINT_OUTPUT": str(output),
    }
    subprocess.run(
        [nvim, "--headless", "-i", "NONE", "-u", str(INIT)],
        env=env,
        cwd=root,
        check=True,
        timeout=180,
        capture_output=True,
    )
    shown = sorted(output.read_text(encoding="utf-8").splitlines())
    lines = path.read_text(encoding="utf-8").splitlines()

    def byte_column(line: int, column: int) -> int:
        return len(lines[line - 1][: column - 1].encode("utf-8"))

    expected = sorted(
        f"{f['code']} {f['line'] - 1} {byte_column(f['line'], f['column'])} "
        f"{f['end_line'] - 1} {byte_column(f['end_line'], f['end_column'])} session-lint"
        for f in cli_json(root, str(path.relative_to(root)))
    )
    assert expected, "the fixture has findings"
    assert shown == expected
