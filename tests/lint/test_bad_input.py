"""Bad input through the command line: one clear message each, the right exit code
(README, "Usage": 0 clean, 1 findings, 2 usage/config/internal error), and the other
files still linted.

What can be tested as root (CI runs as root): permission bits do not stop root
from reading, so "cannot read" is produced with paths no one can read — a
dangling symlink, a symlink loop, a path through a regular file — and with paths
that must not be read (a FIFO would block, a socket cannot be opened). The
``EACCES`` paths of the runner and discovery are tested in process, with the
failing call patched (last section). Already covered in test_cli.py: unknown
config key, unknown code in ``--select``/``--ignore``, a missing path.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from session_lint.cli import runner
from session_lint.project.config import Config
from session_lint.project.discovery import discover

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = '[tool.session-lint]\nselect = ["SL000", "SL101"]\n'
BAD = """\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as s:
        await s.commit()
"""


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "session_lint", "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def codes(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    data = json.loads(proc.stdout)
    # A run with errors gives {"findings": [...], "errors": [...]} (see the README).
    rows = data["findings"] if isinstance(data, dict) else data
    return [(f["path"], f["code"]) for f in rows]


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("session-lint: error:")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "handlers.py").write_text(BAD)
    return tmp_path


# -- files that are not (valid) Python: one SL000 each, exit 1 ---------------------

NOT_PYTHON = {
    "non_utf8.py": (b"x = '\xff\xfe caf\xe9'\n", "file cannot be decoded"),
    "bad_cookie.py": (b"# -*- coding: uft-8 -*-\nx = 1\n", "unknown encoding: uft-8"),
    "binary.py": (bytes(range(256)) * 4, "file cannot be decoded"),
    "nul.py": (b"x = 1\x00\n", "null bytes"),
    "zip_named_py.py": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 64, "null bytes"),
    "syntax.py": (b"def f(:\n    pass\n", "file does not parse"),
}


@pytest.mark.parametrize("name", NOT_PYTHON)
def test_not_python_is_one_sl000(project: Path, name: str) -> None:
    data, message = NOT_PYTHON[name]
    (project / "app" / name).write_bytes(data)
    proc = cli("--format", "json", "app", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert errors(proc) == []
    assert sorted(codes(proc)) == sorted([(f"app/{name}", "SL000"), ("app/handlers.py", "SL101")])
    (finding,) = [f for f in json.loads(proc.stdout) if f["code"] == "SL000"]
    assert message in finding["message"]


def test_empty_files_are_clean(project: Path) -> None:
    (project / "app" / "__init__.py").write_bytes(b"")
    (project / "app" / "bom_only.py").write_bytes(b"\xef\xbb\xbf")
    (project / "app" / "newline.py").write_bytes(b"\n")
    proc = cli(
        "--format", "json", "app/__init__.py", "app/bom_only.py", "app/newline.py", cwd=project
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[]", "")


def test_too_deep_expression_is_one_sl000_without_libcst(project: Path) -> None:
    """libcst's native parser segfaults on ``a+a+…`` with 20,000 terms (after minutes
    of work); with ``--jobs 1`` no worker process would contain the crash."""
    deep = "from sqlalchemy.ext.asyncio import AsyncSession\nx = " + "+".join(["a"] * 20_000)
    (project / "app" / "deep.py").write_text(deep + "\n")
    (project / "app" / "parens.py").write_text("s = None\nx = " + "f(" * 5000 + ")" * 5000 + "\n")
    proc = cli("--format", "json", "--jobs", "1", "app", cwd=project, timeout=30)
    assert proc.returncode == 1 and errors(proc) == []
    rows = json.loads(proc.stdout)
    assert [(r["path"], r["line"], r["code"]) for r in rows] == [
        ("app/deep.py", 2, "SL000"),
        ("app/handlers.py", 5, "SL101"),
        ("app/parens.py", 2, "SL000"),
    ]
    assert "too deeply nested" in rows[0]["message"]
    assert "too many nested parentheses" in rows[2]["message"]


# -- paths that cannot be read: a message each, exit 2, the rest linted ------------


def test_paths_that_cannot_be_read(project: Path) -> None:
    app = project / "app"
    (app / "dangling.py").symlink_to(app / "missing.py")
    (app / "loop_a.py").symlink_to(app / "loop_b.py")
    (app / "loop_b.py").symlink_to(app / "loop_a.py")
    os.mkfifo(app / "fifo.py")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(app / "sock.py"))
        names = ["dangling.py", "loop_a.py", "handlers.py/x.py", "fifo.py", "sock.py"]
        proc = cli("--format", "json", *(f"app/{n}" for n in names), "app/handlers.py", cwd=project)
    finally:
        server.close()
    assert proc.returncode == 2
    assert codes(proc) == [("app/handlers.py", "SL101")]
    assert errors(proc) == [
        "session-lint: error: app/dangling.py: No such file or directory",
        "session-lint: error: app/loop_a.py: cannot access: Too many levels of symbolic links",
        "session-lint: error: app/handlers.py/x.py: cannot access: Not a directory",
        "session-lint: error: app/fifo.py: not a regular file; not linted",
        "session-lint: error: app/sock.py: not a regular file; not linted",
    ]


def test_walking_passes_over_what_is_not_a_regular_file(project: Path) -> None:
    app = project / "app"
    (app / ".#handlers.py").symlink_to("root@host.1234:1700000000")  # an editor's lock file
    (app / "loop_a.py").symlink_to(app / "loop_b.py")
    (app / "loop_b.py").symlink_to(app / "loop_a.py")
    os.mkfifo(app / "fifo.py")
    proc = cli("--format", "json", ".", cwd=project, timeout=30)
    assert (proc.returncode, proc.stderr) == (1, "")
    assert codes(proc) == [("app/handlers.py", "SL101")]


def test_directory_loop_via_symlinks(project: Path) -> None:
    app = project / "app"
    (app / "sub").mkdir()
    (app / "sub" / "up").symlink_to(app, target_is_directory=True)
    (app / "sub" / "self").symlink_to(app / "sub", target_is_directory=True)
    (app / "sub" / "more.py").write_text(BAD)
    proc = cli("--format", "json", "app", "app/sub/up", cwd=project, timeout=30)
    assert (proc.returncode, proc.stderr) == (1, "")
    assert codes(proc) == [("app/handlers.py", "SL101"), ("app/sub/more.py", "SL101")]


# -- configuration and usage: exit 2, nothing linted, one message --------------------


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        ("[tool.session-lint\n", "invalid TOML"),
        ('[tool.session-lint]\nselect = "SL101"\n', "'select' must be a list of strings"),
        ("[tool.session-lint]\nselect = [\n", "invalid TOML"),
        (b"\xff\xfe[tool]\n", "pyproject.toml"),
        ('[tool.session-lint]\nsession-names = ["s"]\nsesion-names = ["t"]\n', "'sesion-names'"),
    ],
)
def test_bad_config(project: Path, pyproject: str | bytes, message: str) -> None:
    path = project / "pyproject.toml"
    if isinstance(pyproject, bytes):
        path.write_bytes(pyproject)
    else:
        path.write_text(pyproject)
    proc = cli("app", cwd=project)
    assert (proc.returncode, proc.stdout) == (2, "")
    (line,) = errors(proc)
    assert message in line and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--select", "SL999"),
        ("--select", "XYZ"),
        ("--select", ","),
        ("--ignore", "SL1,BOGUS"),
        ("--explain", "SL999"),
        ("--jobs", "0"),
        ("--format", "xml"),
    ],
)
def test_bad_usage(project: Path, args: tuple[str, ...]) -> None:
    proc = cli(*args, "app", cwd=project)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.strip() and "Traceback" not in proc.stderr


# -- EACCES, in process (root reads everything) ------------------------------------


def test_unreadable_file_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.py", "locked.py", "z.py"):
        (tmp_path / name).write_text(BAD)
    locked = str(tmp_path / "locked.py")
    real_open = open

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if file == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", guarded_open)
    paths = [str(tmp_path / n) for n in ("a.py", "locked.py", "z.py")]
    result = runner.run(
        paths, Config(root=str(tmp_path), select=("SL101",)), runner.Options(use_cache=False)
    )
    assert result.errors == [f"{locked}: cannot read: Permission denied"]
    assert [f.path for f in result.findings] == [paths[0], paths[2]]


def test_unreadable_directory_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("a", "locked", "z"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "m.py").write_text(BAD)
    locked = str(tmp_path / "locked")
    real_scandir = os.scandir

    def guarded_scandir(path: str) -> object:
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    found = discover([str(tmp_path)], Config(root=str(tmp_path)))
    assert found.errors == [f"{locked}: cannot read directory: Permission denied"]
    assert found.files == [str(tmp_path / "a" / "m.py"), str(tmp_path / "z" / "m.py")]
