"""What users meet first, through the installed commands (``session-lint``,
``flake8``, ``python -m session_lint.editors.server``) in throwaway projects: excludes
that hold for named files, config codes checked, errors that no format hides,
the more specific selector winning, ``.gitignore``, one-line messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lint.conftest import ROOT
from tests.lint.test_flake8 import flake8_config

SCRIPT = Path(sys.executable).with_name("session-lint")

SL101_SOURCE = """\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as s:
        await s.commit()
"""


def cli(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed ``session-lint``, in an environment the caller's shell does
    not colour: only ``extra_env`` sets ``NO_COLOR``/``FORCE_COLOR``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    for name in ("PYTHONWARNINGS", "NO_COLOR", "FORCE_COLOR"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    return subprocess.run(
        [str(SCRIPT), "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def project(root: Path, settings: str = "") -> Path:
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "app"\n\n[tool.session-lint]\n{settings}'
    )
    for relative in ("app/handlers.py", "legacy/0001.py", ".venv/lib/x.py", "build/y.py"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SL101_SOURCE)
    return root


def codes_at(stdout: str) -> set[str]:
    return {line.split(":")[0] for line in stdout.splitlines() if ": SL" in line}


# -- 1. --force-exclude, and the flake8 plugin's excludes ------------------------------


def test_force_exclude_applies_excludes_to_named_files(tmp_path: Path) -> None:
    root = project(tmp_path, 'exclude = ["legacy"]\n')
    named = ("app/handlers.py", "legacy/0001.py", ".venv/lib/x.py", "build/y.py")
    plain = cli(*named, cwd=root)
    assert codes_at(plain.stdout) == set(named), "named files are linted without the flag"
    forced = cli("--force-exclude", *named, cwd=root)
    assert forced.returncode == 1, forced.stderr
    assert codes_at(forced.stdout) == {"app/handlers.py"}


def test_help_lists_the_new_flags(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path).stdout
    assert "--force-exclude" in out and "--no-respect-gitignore" in out


def test_hooks_pass_force_exclude() -> None:
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    entries = [line.split(":", 1)[1].strip() for line in hooks.splitlines() if "entry:" in line]
    assert entries == ["session-lint --force-exclude", "session-lint --fix --force-exclude"]


def flake8(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flake8", "--config", str(flake8_config(root)), *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def test_flake8_plugin_honours_exclude(tmp_path: Path) -> None:
    root = project(tmp_path, 'exclude = ["legacy"]\nextend-exclude = ["extra"]\n')
    (root / "extra").mkdir()
    (root / "extra" / "old.py").write_text(SL101_SOURCE)
    proc = flake8(root, "--select", "SL", ".")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reported = {line.split(":")[0] for line in proc.stdout.splitlines()}
    assert reported == {"./app/handlers.py"}, proc.stdout


# -- 2. unknown codes in the config ----------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ('select = ["SL1O1"]\n', "'select'"),
        ('ignore = ["SL1O1"]\n', "'ignore'"),
        ('extend-select = ["SL1O1"]\n', "'extend-select'"),
        ('per-file-ignores = { "tests/**" = ["SL1O1"] }\n', "'per-file-ignores.tests/**'"),
        ('rule-roles = { SL1O1 = ["app"] }\n', "'rule-roles.SL1O1'"),
    ],
)
def test_unknown_code_in_config_is_an_error(tmp_path: Path, settings: str, key: str) -> None:
    root = project(tmp_path, settings)
    proc = cli("app", cwd=root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "All checks passed" not in proc.stdout
    assert key in proc.stderr and "'SL1O1'" in proc.stderr, proc.stderr


def test_prefixes_and_all_stay_valid(tmp_path: Path) -> None:
    root = project(tmp_path, 'select = ["SL1", "ALL"]\nignore = ["SL5"]\n')
    proc = cli("app", cwd=root)
    assert proc.returncode == 1, proc.stderr


def test_unknown_code_in_config_stops_flake8_plugin_only(tmp_path: Path) -> None:
    # 5. A bad session-lint config: one line, and pyflakes' findings still come.
    root = project(tmp_path, 'select = ["SL1O1"]\n')
    (root / "app" / "handlers.py").write_text("import os\n" + SL101_SOURCE)
    proc = flake8(root, "--select", "SL,F", "app/handlers.py")
    assert "app/handlers.py:1:1: F401 'os' imported but unused" in proc.stdout, proc.stderr
    assert "SL101" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("session-lint: error: ") and "'SL1O1'" in errors[0]
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1  # pyflakes' finding


# -- 7. errors in every format ---------------------------------------------------------


def test_missing_path_is_an_error_in_every_format(tmp_path: Path) -> None:
    root = project(tmp_path, 'select = ["SL101"]\n')
    (root / "app" / "handlers.py").write_text("x = 1\n")
    text = cli("missing.py", "app", cwd=root)
    assert text.returncode == 2
    assert "All checks passed" not in text.stdout
    assert text.stdout.strip() == "Found 1 error: not every file was linted"
    assert "missing.py: No such file or directory" in text.stderr

    data = json.loads(cli("--format", "json", "missing.py", "app", cwd=root).stdout)
    assert data == {
        "findings": [],
        "errors": [{"message": "missing.py: No such file or directory"}],
    }

    sarif = json.loads(cli("--format", "sarif", "missing.py", cwd=root).stdout)
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert note["message"]["text"] == "missing.py: No such file or directory"

    github = cli("--format", "github", "missing.py", cwd=root).stdout
    assert github == "::error title=session-lint::missing.py: No such file or directory\n"


def test_sarif_says_a_clean_run_succeeded(tmp_path: Path) -> None:
    root = project(tmp_path, 'select = ["SL101"]\n')
    sarif = json.loads(cli("--format", "sarif", "app", cwd=root).stdout)
    assert sarif["runs"][0]["invocations"] == [
        {"executionSuccessful": True, "toolExecutionNotifications": []}
    ]


# -- 8. the more specific selector wins ------------------------------------------------


def test_more_specific_select_beats_a_broader_ignore(tmp_path: Path) -> None:
    root = project(tmp_path)
    flags = cli("--select", "SL101", "--ignore", "SL1", "app", cwd=root)
    assert flags.returncode == 1 and ": SL101 " in flags.stdout, flags.stdout + flags.stderr
    equal = cli("--select", "SL101", "--ignore", "SL101", "app", cwd=root)
    assert equal.returncode == 0, "equal specificity: ignore wins"
    broader = cli("--select", "SL1", "--ignore", "SL101", "app", cwd=root)
    assert broader.returncode == 0, broader.stdout


def test_more_specific_select_beats_a_broader_ignore_in_config(tmp_path: Path) -> None:
    root = project(tmp_path, 'select = ["SL101"]\nignore = ["SL1"]\n')
    proc = cli("app", cwd=root)
    assert proc.returncode == 1 and ": SL101 " in proc.stdout, proc.stdout + proc.stderr


# -- 9. the analysis server ------------------------------------------------------------


def server(*args: str, executable: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [executable, "-m", "session_lint.editors.server", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


def test_one_socket_whatever_the_interpreter_is_called(server_dir: Path) -> None:
    bindir = Path(sys.executable).parent
    names = [bindir / n for n in ("python", "python3") if (bindir / n).exists()]
    if len(names) < 2:
        pytest.skip("needs both python and python3 in the interpreter's directory")
    where = {server("--where", executable=str(name)).stdout for name in names}
    assert len(where) == 1, where


def test_a_server_whose_socket_was_deleted_exits(server_dir: Path) -> None:
    path = server_dir / "gone.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "session_lint.editors.server", "--socket", str(path), "--idle", "600"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists()
        path.unlink()
        assert process.wait(timeout=15) == 0, "no client can reach it: it exits"
    finally:
        if process.poll() is None:
            process.kill()


# -- 10. smaller ones ------------------------------------------------------------------


def test_config_file_without_our_table(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "other.toml").write_text("[tool.black]\nline-length = 100\n")
    proc = cli("--config", "other.toml", "app", cwd=root)
    assert proc.returncode == 2
    assert "other.toml: no [tool.session-lint] table" in proc.stderr, proc.stderr
    assert "unknown" not in proc.stderr
    # A dedicated file may hold the keys at top level (like ruff.toml).
    (root / "lint.toml").write_text('select = ["SL101"]\n')
    assert cli("--config", "lint.toml", "app", cwd=root).returncode == 1


def test_a_key_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    root = project(tmp_path, 'select = ["SL201"]\n')
    (root / "app" / "handlers.py").write_text(
        "from sqlalchemy import select\n\n\n"
        "async def f(session):\n"
        '    await session.execute(select(1), execution_options={"isolation_levle\\n": 0})\n'
    )
    proc = cli("app", cwd=root)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert lines[0].startswith("app/handlers.py:5:") and "`isolation_levle\\n`" in lines[0]
    assert lines[1] == "Found 1 problem"


def test_gitignore_is_respected(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".gitignore").write_text("generated/\n")
    (root / ".git" / "info" / "exclude").write_text("scratch.py\n")
    (root / "app" / ".gitignore").write_text("*_pb2.py\n!keep_pb2.py\n")
    for relative in ("generated/models.py", "scratch.py", "app/x_pb2.py", "app/keep_pb2.py"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(SL101_SOURCE)
    linted = codes_at(cli("app", "generated", "scratch.py", ".", cwd=root).stdout)
    # Named paths are linted (without --force-exclude); walked ones are skipped.
    assert {"generated/models.py", "scratch.py", "app/keep_pb2.py", "app/handlers.py"} <= linted
    assert "app/x_pb2.py" not in linted
    walked = codes_at(cli(".", cwd=root).stdout)
    assert walked == {"app/handlers.py", "app/keep_pb2.py", "legacy/0001.py"}
    everything = codes_at(cli("--no-respect-gitignore", ".", cwd=root).stdout)
    assert everything == walked | {"generated/models.py", "scratch.py", "app/x_pb2.py"}
    (root / "pyproject.toml").write_text("[tool.session-lint]\nrespect-gitignore = false\n")
    assert codes_at(cli(".", cwd=root).stdout) == everything


def test_a_gitignore_pattern_re_warns_about_prints_no_warning(tmp_path: Path) -> None:
    # ``[[:space:]]`` is a valid git pattern whose translated regex makes ``re``
    # print ``FutureWarning: Possible nested set`` (from pathspec) on stderr.
    root = project(tmp_path)
    (root / ".git").mkdir()
    (root / ".gitignore").write_text("notes[[:space:]]draft.py\ngenerated/\n")
    (root / "generated").mkdir()
    (root / "generated" / "models.py").write_text(SL101_SOURCE)
    proc = cli(".", cwd=root)
    assert proc.stderr == ""
    # The file's other patterns still apply.
    assert codes_at(proc.stdout) == {"app/handlers.py", "legacy/0001.py"}
