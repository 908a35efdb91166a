"""The command line, end to end: ``python -m session_lint`` in a subprocess, in a
throwaway project. The project's config selects SL000 and SL101 only, so these
tests do not change meaning as rules are added."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from session_lint.analyzer import Plan
from session_lint.cli.cache import CACHE_DIR_NAME
from session_lint.project.config import Config
from session_lint.project.discovery import discover
from session_lint.rules import ALL_RULES

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[project]
name = "app"
dependencies = ["session-runtime"]  # what the SL101 fix imports

[tool.session-lint]
select = ["SL000", "SL101"]
"""

HANDLERS = """\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as s:  # a comment that must survive
        await s.commit()
"""

HANDLERS_FIXED = """\
from sqlalchemy.ext.asyncio import AsyncSession
from session_runtime import get_session


async def handler(engine):
    async with get_session() as s:  # a comment that must survive
        await s.commit()
"""

SYNC = """\
from sqlalchemy.orm import Session


def handler(engine):
    with Session(engine) as s:
        s.commit()
"""

CLEAN = """\
from session_runtime import get_session


async def handler():
    async with get_session() as s:
        await s.commit()
"""

SL101_LINE = re.compile(r"^app/handlers\.py:5:16: SL101 session built by hand", re.M)


def cli(
    *args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "session_lint", *args],
        cwd=cwd,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=environment,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def cli_bytes(*args: str, cwd: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "session_lint", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    app = tmp_path / "app"
    (app / "db").mkdir(parents=True)
    (app / "handlers.py").write_text(HANDLERS)
    (app / "clean.py").write_text(CLEAN)
    # An engine module: building sessions there is the point of it.
    (app / "db" / "engine.py").write_text(HANDLERS)
    return tmp_path


def as_json(proc: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    data = json.loads(proc.stdout)
    assert isinstance(data, list)
    return data


def locations(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["path"], r["line"], r["column"], r["code"]) for r in rows]


# -- exit codes and the text format --------------------------------------------------


def test_clean_tree_exits_0(project: Path) -> None:
    (project / "app" / "handlers.py").write_text(CLEAN)
    proc = cli("--no-cache", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "All checks passed!\n"


def test_findings_exit_1_in_flake8_shape(project: Path) -> None:
    proc = cli("--no-cache", cwd=project)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert SL101_LINE.match(lines[0])
    assert lines[1:] == ["Found 1 problem (1 fixable with --fix --unsafe-fixes)"]
    assert proc.stderr == ""


def test_summary_counts_safe_and_unsafe_fixes(project: Path) -> None:
    (project / "app" / "sync.py").write_text(SYNC)
    proc = cli("--no-cache", cwd=project)
    assert proc.stdout.splitlines()[-1] == "Found 2 problems (1 fixable with --fix --unsafe-fixes)"
    # --unsafe-fixes without --fix only changes the wording: --fix would now apply it.
    proc = cli("--no-cache", "--unsafe-fixes", cwd=project)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == "Found 2 problems (1 fixable with --fix)"
    assert (project / "app" / "handlers.py").read_text() == HANDLERS


def test_exit_zero(project: Path) -> None:
    proc = cli("--no-cache", "--exit-zero", cwd=project)
    assert proc.returncode == 0
    assert SL101_LINE.search(proc.stdout)


def test_statistics(project: Path) -> None:
    (project / "app" / "sync.py").write_text(SYNC)
    proc = cli("--no-cache", "--statistics", cwd=project)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "2\tSL101\tdirect-session",
        "Found 2 problems (1 fixable with --fix --unsafe-fixes)",
    ]
    proc = cli("--no-cache", "--statistics", "--unsafe-fixes", "--format", "json", cwd=project)
    assert json.loads(proc.stdout) == [
        {"code": "SL101", "name": "direct-session", "count": 2, "fixable": 1}
    ]
    proc = cli("--no-cache", "--statistics", "--format", "sarif", cwd=project)
    assert proc.returncode == 2


# -- machine formats -----------------------------------------------------------------


def test_json_matches_text(project: Path) -> None:
    (project / "app" / "sync.py").write_text(SYNC)
    text = cli("--no-cache", cwd=project)
    proc = cli("--no-cache", "--format", "json", cwd=project)
    assert proc.returncode == 1
    rows = as_json(proc)
    assert rows[0] == {
        "path": "app/handlers.py",
        "line": 5,
        "column": 16,
        "end_line": 5,
        "end_column": 36,
        "code": "SL101",
        "name": "direct-session",
        "message": rows[0]["message"],
        "fix": {"applicability": "unsafe"},
    }
    assert rows[1]["path"] == "app/sync.py" and rows[1]["fix"] is None
    text_lines = text.stdout.splitlines()[:-1]
    assert text_lines == [
        f"{r['path']}:{r['line']}:{r['column']}: {r['code']} {r['message']}" for r in rows
    ]


def test_json_paths_as_given(project: Path) -> None:
    rel = as_json(cli("--no-cache", "--format", "json", "app", cwd=project))
    assert [r["path"] for r in rel] == ["app/handlers.py"]
    dotted = as_json(cli("--no-cache", "--format", "json", "./app/", cwd=project))
    assert [r["path"] for r in dotted] == ["./app/handlers.py"]
    absolute = as_json(cli("--no-cache", "--format", "json", str(project / "app"), cwd=project))
    assert [r["path"] for r in absolute] == [str(project / "app" / "handlers.py")]


def test_github_format(project: Path) -> None:
    proc = cli("--no-cache", "--format", "github", cwd=project)
    assert proc.returncode == 1
    rows = as_json(cli("--no-cache", "--format", "json", cwd=project))
    lines = proc.stdout.splitlines()
    assert len(lines) == len(rows) == 1
    match = re.fullmatch(
        r"::error file=([^,]*),line=(\d+),col=(\d+),endLine=(\d+),endColumn=(\d+),title=(\w+)::(.*)",
        lines[0],
    )
    assert match, lines[0]
    row = rows[0]
    assert match.groups()[:6] == (
        row["path"],
        str(row["line"]),
        str(row["column"]),
        str(row["end_line"]),
        str(row["end_column"]),
        row["code"],
    )
    assert match.group(7) == row["message"]


def test_sarif_format(project: Path) -> None:
    proc = cli("--no-cache", "--format", "sarif", cwd=project)
    assert proc.returncode == 1
    from tests.lint.test_reporters import validate_sarif

    doc = json.loads(proc.stdout)
    validate_sarif(doc)
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == sorted(r.code for r in ALL_RULES)
    rows = as_json(cli("--no-cache", "--format", "json", cwd=project))
    got = [
        (
            res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            res["locations"][0]["physicalLocation"]["region"]["startLine"],
            res["locations"][0]["physicalLocation"]["region"]["startColumn"],
            res["ruleId"],
        )
        for res in run["results"]
    ]
    assert got == locations(rows)


# -- selection -----------------------------------------------------------------------


def test_select_and_ignore(project: Path) -> None:
    (project / "app" / "bad.py").write_text("def broken(:\n    pass\n")
    both = {r["code"] for r in as_json(cli("--no-cache", "--format", "json", cwd=project))}
    assert both == {"SL000", "SL101"}
    only = as_json(cli("--no-cache", "--format", "json", "--select", "SL000", cwd=project))
    assert {r["code"] for r in only} == {"SL000"}
    # A prefix, lower case, spaces: all accepted.
    prefix = as_json(cli("--no-cache", "--format", "json", "--select", " sl1 ", cwd=project))
    assert {r["code"] for r in prefix} == {"SL101"}
    # --select replaces the configured selection: SL1 reaches rules the config left out.
    wider = cli("--no-cache", "--format", "json", "--select", "SL1", cwd=project)
    assert {r["code"] for r in as_json(wider)} >= {"SL101"}
    ignored = as_json(cli("--no-cache", "--format", "json", "--ignore", "SL101", cwd=project))
    assert {r["code"] for r in ignored} == {"SL000"}


@pytest.mark.parametrize("option", ["--select", "--ignore"])
def test_unknown_code_is_a_usage_error(project: Path, option: str) -> None:
    proc = cli("--no-cache", option, "SL101,SL999", cwd=project)
    assert proc.returncode == 2
    assert "SL999" in proc.stderr and option in proc.stderr
    assert proc.stdout == ""


def test_bad_jobs_is_a_usage_error(project: Path) -> None:
    proc = cli("--jobs", "0", cwd=project)
    assert proc.returncode == 2
    assert "--jobs" in proc.stderr


# -- rule information ----------------------------------------------------------------


def test_list_rules(project: Path) -> None:
    proc = cli("--list-rules", cwd=project)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == len(ALL_RULES)
    for rule, line in zip(ALL_RULES, lines, strict=True):
        assert line.startswith(f"{rule.code}  {rule.name} ")
        assert f"fix: {rule.fix_availability.value}" in line
    assert "fix: sometimes" in proc.stdout  # SL101


def test_explain(project: Path) -> None:
    proc = cli("--explain", "SL101", cwd=project)
    assert proc.returncode == 0
    assert proc.stdout.startswith("# SL101 direct-session\n")
    for section in ("## What it does", "## Why is this bad?", "## Example", "## Fix safety"):
        assert section in proc.stdout
    unknown = cli("--explain", "SL999", cwd=project)
    assert unknown.returncode == 2 and "SL999" in unknown.stderr


def test_version(project: Path) -> None:
    from session_lint import __version__

    proc = cli("--version", cwd=project)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"session-lint {__version__}"


# -- fixing --------------------------------------------------------------------------


def test_diff_writes_nothing(project: Path) -> None:
    handlers = project / "app" / "handlers.py"
    safe_only = cli("--no-cache", "--diff", cwd=project)
    assert safe_only.returncode == 0, safe_only.stderr  # SL101's fix is unsafe: no diff
    assert safe_only.stdout == ""
    proc = cli("--no-cache", "--diff", "--unsafe-fixes", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("--- app/handlers.py\n+++ app/handlers.py\n")
    assert (
        "-    async with AsyncSession(engine) as s:  # a comment that must survive" in proc.stdout
    )
    assert "+    async with get_session() as s:  # a comment that must survive" in proc.stdout
    assert "+from session_runtime import get_session" in proc.stdout
    assert "Would fix 1 problem" in proc.stderr
    assert handlers.read_text() == HANDLERS


def test_fix_applies_only_safe_fixes_without_unsafe_flag(project: Path) -> None:
    proc = cli("--no-cache", "--fix", cwd=project)
    assert proc.returncode == 1
    assert (project / "app" / "handlers.py").read_text() == HANDLERS
    assert "Fixed" not in proc.stdout


def test_fix_unsafe_rewrites_and_relints_clean(project: Path) -> None:
    proc = cli("--no-cache", "--fix", "--unsafe-fixes", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["Fixed 1 problem", "All checks passed!"]
    assert (project / "app" / "handlers.py").read_text() == HANDLERS_FIXED
    assert (project / "app" / "db" / "engine.py").read_text() == HANDLERS  # engine module
    again = cli("--no-cache", cwd=project)
    assert again.returncode == 0
    assert again.stdout == "All checks passed!\n"


def test_fix_reports_what_remains(project: Path) -> None:
    (project / "app" / "sync.py").write_text(SYNC)
    proc = cli("--no-cache", "--fix", "--unsafe-fixes", "--format", "json", cwd=project)
    assert proc.returncode == 1
    assert [r["path"] for r in as_json(proc)] == ["app/sync.py"]
    assert (project / "app" / "handlers.py").read_text() == HANDLERS_FIXED


# -- standard input ------------------------------------------------------------------


def test_stdin_lint(project: Path) -> None:
    proc = cli("--no-cache", "-", cwd=project, stdin=HANDLERS.encode())
    assert proc.returncode == 1
    assert proc.stdout.startswith("-:5:16: SL101 ")
    named = cli(
        "--format",
        "json",
        "-",
        "--stdin-filename",
        "app/x.py",
        cwd=project,
        stdin=HANDLERS.encode(),
    )
    assert [r["path"] for r in as_json(named)] == ["app/x.py"]
    # The stdin file name decides engine modules (and per-file-ignores).
    engine = cli("-", "--stdin-filename", "app/db/engine.py", cwd=project, stdin=HANDLERS.encode())
    assert engine.returncode == 0 and engine.stdout == "All checks passed!\n"


def test_stdin_fix_writes_source_to_stdout(project: Path) -> None:
    mixed = (
        HANDLERS.replace(
            "from sqlalchemy.ext.asyncio import AsyncSession\n",
            "from sqlalchemy.ext.asyncio import AsyncSession\nfrom sqlalchemy.orm import Session\n",
        )
        + "\n\ndef sync(engine):\n    with Session(engine) as s:\n        s.commit()\n"
    )
    proc = cli_bytes("--fix", "--unsafe-fixes", "-", cwd=project, stdin=mixed.encode())
    assert proc.returncode == 1  # the sync session has no fix and remains
    out = proc.stdout.decode()
    assert "async with get_session() as s:  # a comment that must survive" in out
    assert "from session_runtime import get_session" in out
    assert "with Session(engine) as s:" in out
    err = proc.stderr.decode()
    assert re.search(r"^-:\d+:10: SL101 ", err, re.M) and "Fixed 1 problem" in err
    # Nothing to fix: the source comes back unchanged, byte for byte.
    clean = cli_bytes("--fix", "-", cwd=project, stdin=b"x = 1\r\n")
    assert clean.returncode == 0 and clean.stdout == b"x = 1\r\n"


def test_stdin_with_other_paths_is_a_usage_error(project: Path) -> None:
    proc = cli("-", "app", cwd=project)
    assert proc.returncode == 2 and "standard input" in proc.stderr


# -- robustness ----------------------------------------------------------------------


def test_syntax_error_file_does_not_stop_the_run(project: Path) -> None:
    (project / "app" / "bad.py").write_text("async def broken(:\n    pass\n")
    proc = cli("--no-cache", "--format", "json", cwd=project)
    assert proc.returncode == 1
    assert [(r["path"], r["code"]) for r in as_json(proc)] == [
        ("app/bad.py", "SL000"),
        ("app/handlers.py", "SL101"),
    ]


def test_missing_path_exit_2_others_still_linted(project: Path) -> None:
    proc = cli("--no-cache", "app/handlers.py", "nope.py", "nodir/", cwd=project)
    assert proc.returncode == 2
    assert SL101_LINE.search(proc.stdout)
    assert "nope.py: No such file or directory" in proc.stderr
    assert "nodir/: No such file or directory" in proc.stderr


def test_unreadable_file_exit_2(project: Path) -> None:
    # As root every file is readable; a dangling symlink is what cannot be read.
    bad = project / "app" / "link.py"
    bad.symlink_to(project / "app" / "missing-target.py")
    proc = cli("--no-cache", "app/link.py", "app/handlers.py", cwd=project)
    assert proc.returncode == 2
    assert "app/link.py" in proc.stderr
    assert SL101_LINE.search(proc.stdout)


# -- configuration -------------------------------------------------------------------


def test_unknown_config_key_exit_2(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT + 'selct = ["SL1"]\n')
    proc = cli("--no-cache", cwd=project)
    assert proc.returncode == 2
    assert "'selct'" in proc.stderr
    assert proc.stdout == ""


def test_explicit_config_file(project: Path) -> None:
    other = project / "lint.toml"
    other.write_text('[tool.session-lint]\nselect = ["SL000"]\n')
    proc = cli("--no-cache", "--config", str(other), cwd=project)
    assert proc.returncode == 0, proc.stdout
    missing = cli("--no-cache", "--config", "absent.toml", cwd=project)
    assert missing.returncode == 2 and "absent.toml" in missing.stderr


def test_config_found_from_a_subdirectory(project: Path) -> None:
    # Run from inside app/: the pyproject above is found, and its select applies.
    (project / "app" / "bad.py").write_text("def broken(:\n")
    proc = cli("--no-cache", "--format", "json", "--ignore", "SL000", ".", cwd=project / "app")
    assert [(r["path"], r["code"]) for r in as_json(proc)] == [("handlers.py", "SL101")]


def test_per_file_ignores(project: Path) -> None:
    legacy = project / "app" / "legacy"
    legacy.mkdir()
    (legacy / "old.py").write_text(HANDLERS)
    (project / "pyproject.toml").write_text(
        PYPROJECT + '[tool.session-lint.per-file-ignores]\n"app/legacy/*" = ["SL101"]\n'
    )
    proc = cli("--no-cache", "--format", "json", cwd=project)
    assert [r["path"] for r in as_json(proc)] == ["app/handlers.py"]


def test_noqa(project: Path) -> None:
    noqa = HANDLERS.replace("# a comment that must survive", "# noqa: SL101")
    (project / "app" / "handlers.py").write_text(noqa)
    assert cli("--no-cache", cwd=project).returncode == 0
    other = HANDLERS.replace("# a comment that must survive", "# noqa: SL2")
    (project / "app" / "handlers.py").write_text(other)
    assert cli("--no-cache", cwd=project).returncode == 1
    bare = HANDLERS.replace("# a comment that must survive", "# noqa")
    (project / "app" / "handlers.py").write_text(bare)
    assert cli("--no-cache", cwd=project).returncode == 0


def test_excludes_when_walking_but_not_for_named_files(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT + 'extend-exclude = ["generated"]\n')
    for skipped in ("generated", ".venv/lib", "node_modules/pkg", "build"):
        (project / skipped).mkdir(parents=True)
        (project / skipped / "gen.py").write_text(HANDLERS)
    walked = as_json(cli("--no-cache", "--format", "json", cwd=project))
    assert [r["path"] for r in walked] == ["app/handlers.py"]
    named = as_json(cli("--no-cache", "--format", "json", "generated/gen.py", cwd=project))
    assert [r["path"] for r in named] == ["generated/gen.py"]
    # A named directory too: the user asked for it, even though the config excludes it.
    named_dir = as_json(cli("--no-cache", "--format", "json", "generated", cwd=project))
    assert [r["path"] for r in named_dir] == ["generated/gen.py"]


def test_path_globs_exclude_below_named_directories(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT + 'extend-exclude = ["app/gen/**"]\n')
    (project / "app" / "gen").mkdir()
    (project / "app" / "gen" / "models.py").write_text(HANDLERS)
    for args in ((), ("app",), ("app/",)):
        rows = as_json(cli("--no-cache", "--format", "json", *args, cwd=project))
        assert [r["path"].removeprefix("./") for r in rows] == ["app/handlers.py"], args


# -- jobs and cache ------------------------------------------------------------------


def test_jobs_give_the_same_output(project: Path) -> None:
    many = project / "many"
    many.mkdir()
    for i in range(20):  # well above the pool threshold
        body = HANDLERS if i % 3 else SYNC
        (many / f"m{i:02}.py").write_text(body + ("\ndef broken(:\n" if i == 7 else ""))
    one = cli("--no-cache", "--jobs", "1", cwd=project)
    two = cli("--no-cache", "--jobs", "2", cwd=project)
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout
    assert one.stdout.count("\n") == 22  # 20 files + app/handlers.py + the summary
    fixed_one = cli("--no-cache", "--diff", "--unsafe-fixes", "--jobs", "1", cwd=project)
    fixed_two = cli("--no-cache", "--diff", "--unsafe-fixes", "--jobs", "2", cwd=project)
    assert fixed_one.stdout == fixed_two.stdout and fixed_one.stdout


def test_no_cache_without_a_cache_dir(project: Path) -> None:
    proc = cli("--no-cache", cwd=project)
    assert proc.returncode == 1
    assert not (project / CACHE_DIR_NAME).exists()


def test_cache_is_used_and_invalidated(project: Path) -> None:
    first = cli(cwd=project)
    assert first.returncode == 1
    cache_dir = project / CACHE_DIR_NAME
    entries = sorted(e for e in cache_dir.rglob("*.json") if "index" not in e.parts)
    assert len(entries) == 3  # one per linted file
    assert len(list((cache_dir / "index").glob("*.json"))) == 1  # the project index
    assert (cache_dir / ".gitignore").read_text().strip().endswith("*")
    # A hit serves the stored answer: poison every entry and the output changes.
    saved = {e: e.read_text() for e in entries}
    for entry in entries:
        data = json.loads(entry.read_text())
        for row in data["findings"]:
            row["message"] = "from the cache"
        entry.write_text(json.dumps(data))
    assert "from the cache" in cli(cwd=project).stdout
    # A config change is a different key: a fresh answer, not the poisoned one.
    (project / "pyproject.toml").write_text(PYPROJECT + 'session-names = ["s"]\n')
    fresh = cli(cwd=project)
    assert "from the cache" not in fresh.stdout and SL101_LINE.search(fresh.stdout)
    # …and a config change that changes findings shows them at once.
    (project / "pyproject.toml").write_text(PYPROJECT + 'ignore = ["SL101"]\n')
    assert cli(cwd=project).returncode == 0
    # Changed content too.
    (project / "pyproject.toml").write_text(PYPROJECT)
    for entry, text in saved.items():
        entry.write_text(text)
    (project / "app" / "handlers.py").write_text(CLEAN)
    assert cli(cwd=project).returncode == 0
    # A damaged entry (the index's too) is a miss, never a crash.
    for entry in cache_dir.rglob("*.json"):
        entry.write_text("{not json")
    assert cli(cwd=project).returncode == 0


# -- discovery, in process -------------------------------------------------------------


def test_discovery_order_dedup_and_symlink_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name in ("b.py", "a.py", "c.pyi", "notes.txt", "sub/z.py"):
        (tmp_path / "pkg" / name).write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "loop").symlink_to(tmp_path / "pkg", target_is_directory=True)
    (tmp_path / "pkg" / "alias.py").symlink_to(tmp_path / "pkg" / "a.py")
    found = discover(["pkg", "pkg/a.py", "."], Config(root=str(tmp_path)))
    assert found.errors == []
    assert found.files == ["pkg/a.py", "pkg/b.py", "pkg/c.pyi", "pkg/sub/z.py"]
    assert discover([], Config(root=str(tmp_path))).files == found.files
    notes = discover(["pkg/notes.txt"], Config(root=str(tmp_path)))
    assert notes.files == ["pkg/notes.txt"]  # named explicitly: linted whatever its suffix


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux")
def test_a_crashing_worker_costs_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faulthandler
    import signal

    from session_lint.cli import runner

    parent = os.getpid()
    real = runner.process_source

    def crash_on_poison(
        source: bytes,
        path: str,
        config: Config,
        options: runner.Options,
        planned: Plan | None = None,
    ) -> runner.FileResult:
        if path.endswith("poison.py") and os.getpid() != parent:
            faulthandler.disable()  # keep pytest's crash report out of the output
            os.kill(os.getpid(), signal.SIGSEGV)  # what libcst's parser does on some inputs
        return real(source, path, config, options, planned)

    monkeypatch.setattr(runner, "process_source", crash_on_poison)
    names = [f"f{i}.py" for i in range(9)] + ["poison.py"]
    for name in names:
        (tmp_path / name).write_text(HANDLERS)
    config = Config(root=str(tmp_path), select=("SL101",))
    options = runner.Options(use_cache=False, jobs=2)
    result = runner.run([str(tmp_path / n) for n in names], config, options)
    poison = str(tmp_path / "poison.py")
    assert result.errors == [
        f"{poison}: internal error: the analyzer process crashed on this file "
        "(libcst's parser can crash on extremely deeply nested code)"
    ]
    assert sorted(f.path for f in result.findings) == sorted(str(tmp_path / n) for n in names[:-1])


def test_the_command_ends_without_teardown_and_keeps_all_its_output(tmp_path: Path) -> None:
    """``session-lint`` ends with ``os._exit`` after flushing (``cli.main.entry``):
    a large report arrives whole, with the exit code ``main`` returned."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    lines = ["from sqlalchemy.ext.asyncio import AsyncSession\n"]
    for i in range(600):
        lines.append(
            f"\n\nasync def handler_{i}(s: AsyncSession) -> None:\n"
            f'    await s.execute("SELECT {i}")\n'
            "    s.commit()\n"
        )
    (tmp_path / "many.py").write_text("".join(lines), encoding="utf-8")
    done = cli("--no-cache", "--format", "json", "many.py", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)  # cut short, it would not parse
    assert len(findings) >= 1200
    assert {f["code"] for f in findings} >= {"SL403", "SL501"}
    clean = cli("--no-cache", "--exit-zero", "--format", "json", "many.py", cwd=tmp_path)
    assert clean.returncode == 0 and json.loads(clean.stdout) == findings


def test_the_command_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    body = "".join(
        f"\n\nasync def h{i}(s: AsyncSession) -> None:\n    s.commit()\n" for i in range(2000)
    )
    source = "from sqlalchemy.ext.asyncio import AsyncSession\n" + body
    (tmp_path / "many.py").write_text(source, encoding="utf-8")
    reader = subprocess.Popen(
        [sys.executable, "-m", "session_lint", "--no-cache", "many.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.read(200)  # like ``| head -c 200``: then the pipe closes
    reader.stdout.close()
    error = reader.stderr.read().decode()
    code = reader.wait(timeout=120)
    assert first.startswith(b"many.py:")
    assert code in (0, 1), error
    assert "Traceback" not in error and "Exception ignored" not in error, error
