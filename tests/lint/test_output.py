"""The output a ruff user expects, through the installed ``session-lint``:
``--show-fixes``, ``--show-settings``, ``--show-files``, ``--output-file``,
``--quiet``, the ``full`` format (the default on a terminal, checked through a
pseudo-terminal), ``gitlab`` and ``junit``, SARIF's ``helpUri`` and fingerprints,
and the rule pages those addresses point to."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from session_lint.rules import docs as docs_pages
from tests.lint.conftest import ROOT
from tests.lint.test_first_use import SCRIPT, cli, project
from tests.lint.test_reporters import validate_sarif

# SL105 with an unsafe fix (pass expire_on_commit=False), at line 4, column 11.
SL105_SOURCE = """\
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine("postgresql+asyncpg://db/app")
Session = async_sessionmaker(engine)
"""
SL105_LINE = 'Session = async_sessionmaker(engine)'


def sl105_project(root: Path, name: str = "app/factory.py") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.session-lint]\n')
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SL105_SOURCE)
    return root


# -- --show-fixes ----------------------------------------------------------------------


def test_show_fixes_lists_what_fix_would_apply_and_what_it_applied(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    would = cli("--unsafe-fixes", "--show-fixes", cwd=root)
    assert would.returncode == 1, would.stderr
    assert "Would fix 1 problem:\n- app/factory.py:\n    1 \N{MULTIPLICATION SIGN} SL105 (async-expire-on-commit)\n" in (
        would.stdout
    )
    assert (root / "app/factory.py").read_text() == SL105_SOURCE

    safe_only = cli("--show-fixes", cwd=root)  # the unsafe fix is not applied by --fix alone
    assert "No fixes available" in safe_only.stdout

    fixed = cli("--fix", "--unsafe-fixes", "--show-fixes", cwd=root)
    assert fixed.returncode == 0, fixed.stderr
    assert "Fixed 1 problem:\n- app/factory.py:\n    1 \N{MULTIPLICATION SIGN} SL105 (async-expire-on-commit)\n" in (
        fixed.stdout
    )
    assert fixed.stdout.endswith("All checks passed!\n")
    assert "expire_on_commit=False" in (root / "app/factory.py").read_text()


# -- --show-settings, --show-files -------------------------------------------------------


def test_show_settings_defaults_to_the_current_directory(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    here = cli("--show-settings", cwd=root)
    assert here.returncode == 0, here.stderr
    assert here.stdout.startswith("path: .\nrole: (a directory")
    assert f"config-file = {json.dumps(str(root / 'pyproject.toml'))}" in here.stdout
    one = cli("--show-settings", "app/factory.py", cwd=root)
    assert one.returncode == 0, one.stderr
    assert "role: app" in one.stdout.splitlines()[1]
    assert "SL105" in one.stdout


def test_show_files_lists_what_a_run_lints(tmp_path: Path) -> None:
    root = project(tmp_path, 'exclude = ["legacy"]\n')
    (root / ".gitignore").write_text("build/\n")
    shown = cli("--show-files", cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["app/handlers.py"]
    missing = cli("--show-files", "nowhere", cwd=root)
    assert missing.returncode == 2 and "nowhere" in missing.stderr


# -- --output-file, --quiet ---------------------------------------------------------------


def test_output_file_takes_the_report_and_leaves_the_summary(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    text = cli("--output-file", "report.txt", cwd=root)
    assert text.returncode == 1
    report = (root / "report.txt").read_text()
    assert report.startswith("app/factory.py:4:11: SL105 ") and report.count("\n") == 1
    assert text.stdout == "Found 1 problem (1 fixable with --fix --unsafe-fixes)\n"

    as_json = cli("--format", "json", "--output-file", "report.json", cwd=root)
    assert as_json.stdout == ""
    assert [f["code"] for f in json.loads((root / "report.json").read_text())] == ["SL105"]
    assert not list(root.glob(".session-lint-*")), "no temporary file is left behind"

    errors = cli("--format", "json", "--output-file", "report.json", "nowhere", cwd=root)
    assert errors.returncode == 2 and "nowhere" in errors.stderr
    assert json.loads((root / "report.json").read_text())["errors"]

    unwritable = cli("--output-file", "no/such/dir/report.txt", cwd=root)
    assert unwritable.returncode == 2
    assert "--output-file no/such/dir/report.txt" in unwritable.stderr


def test_quiet_prints_the_findings_only(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    quiet = cli("-q", cwd=root)
    assert quiet.returncode == 1
    assert quiet.stdout.startswith("app/factory.py:4:11: SL105 ")
    assert quiet.stdout.count("\n") == 1
    clean = sl105_project(tmp_path / "clean", "app/empty.py")
    (clean / "app/empty.py").write_text("x = 1\n")
    assert cli("--quiet", cwd=clean).stdout == ""


# -- --format full, and the default on a terminal ------------------------------------------


def test_full_format_shows_the_line_a_caret_span_and_the_fix(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    full = cli("--output-format", "full", cwd=root)
    lines = full.stdout.splitlines()
    assert lines[0].startswith("app/factory.py:4:11: SL105 async session factory")
    assert lines[1:5] == [
        "  |",
        f"4 | {SL105_LINE}",
        "  |           " + "^" * len("async_sessionmaker(engine)") + " SL105",
        "  |",
    ]
    assert lines[5] == "  = Unsafe fix: pass `expire_on_commit=False`"
    assert "\x1b[" not in full.stdout, "no colour when piped"
    # [*]: --fix (with --unsafe-fixes, as given) would fix it.
    assert " SL105 [*] " in cli("--format", "full", "--unsafe-fixes", cwd=root).stdout


def on_terminal(root: Path, *args: str, **env: str) -> str:
    """The output of ``session-lint`` whose stdout is a pseudo-terminal."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("NO_COLOR", "FORCE_COLOR"):
        if name not in env:
            environ.pop(name, None)
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(SCRIPT), "--no-cache", *args],
            cwd=root,
            stdout=follower,
            stderr=subprocess.DEVNULL,
            env=environ,
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_full_in_colour_is_the_default_on_a_terminal(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    coloured = on_terminal(root)
    assert "\x1b[" in coloured
    assert "^" * len("async_sessionmaker(engine)") in coloured
    plain = on_terminal(root, NO_COLOR="1")
    assert "\x1b[" not in plain
    assert f"4 | {SL105_LINE}\n" in plain, "still the full format, without colour"
    concise = on_terminal(root, "--format", "concise")
    assert "4 |" not in concise and "\x1b[" not in concise
    piped = cli(cwd=root).stdout
    assert "4 |" not in piped and piped.startswith("app/factory.py:4:11: SL105 ")
    forced = cli("--format", "full", cwd=root, extra_env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[" in forced


# -- --format gitlab ------------------------------------------------------------------------


def gitlab(root: Path) -> list[dict[str, object]]:
    result = cli("--format", "gitlab", cwd=root)
    assert result.returncode == 1, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_gitlab_code_quality_report(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    # The same finding twice on equal lines: two fingerprints.
    (root / "app/factory.py").write_text(SL105_SOURCE + SL105_LINE + "\n")
    rows = gitlab(root)
    for row in rows:
        assert set(row) >= {"description", "check_name", "fingerprint", "severity", "location"}
        assert row["check_name"] == "SL105"
        assert row["severity"] in ("info", "minor", "major", "critical", "blocker")
        location = row["location"]
        assert isinstance(location, dict)
        assert location["path"] == "app/factory.py"
        assert isinstance(location["lines"]["begin"], int)
    assert [r["location"]["lines"]["begin"] for r in rows] == [4, 5]  # type: ignore[index]
    before = [r["fingerprint"] for r in rows]
    assert len(set(before)) == 2

    # Lines move: the fingerprints stay.
    (root / "app/factory.py").write_text("\n\n" + SL105_SOURCE + SL105_LINE + "\n")
    moved = gitlab(root)
    assert [r["location"]["lines"]["begin"] for r in moved] == [6, 7]  # type: ignore[index]
    assert [r["fingerprint"] for r in moved] == before


# -- --format junit -------------------------------------------------------------------------


def test_junit_report(tmp_path: Path) -> None:
    root = project(tmp_path)
    result = cli("--format", "junit", "app", "legacy", cwd=root)
    assert result.returncode == 1, result.stderr
    suites = ET.fromstring(result.stdout)
    assert suites.tag == "testsuites"
    assert suites.get("tests") == suites.get("failures") == "2"
    assert [s.get("name") for s in suites] == ["app/handlers.py", "legacy/0001.py"]
    for suite in suites:
        assert suite.tag == "testsuite"
        for key in ("name", "tests", "failures", "errors"):
            assert suite.get(key) is not None, key
        (case,) = suite
        assert case.tag == "testcase"
        assert case.get("name") == "org.session-lint.SL101"
        assert case.get("classname") == suite.get("name")
        assert case.get("line") == "5"
        (failure,) = case
        assert failure.tag == "failure" and failure.get("message")
        assert (failure.text or "").startswith("line 5, col 16, ")

    clean = ET.fromstring(cli("--format", "junit", "app", "--select", "SL105", cwd=root).stdout)
    assert clean.get("failures") == "0" and clean.find("./testsuite/testcase") is not None

    broken = cli("--format", "junit", "nowhere", cwd=root)
    assert broken.returncode == 2
    error = ET.fromstring(broken.stdout).find("./testsuite/testcase/error")
    assert error is not None and "nowhere" in (error.get("message") or "")


# -- SARIF ----------------------------------------------------------------------------------


def test_sarif_has_help_uris_fingerprints_and_invocations(tmp_path: Path) -> None:
    root = sl105_project(tmp_path)
    result = cli("--format", "sarif", cwd=root)
    doc = json.loads(result.stdout)
    validate_sarif(doc)
    run = doc["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert rules["SL105"]["helpUri"] == (ROOT / "docs/rules/SL105.md").as_uri()
    (res,) = run["results"]
    (fingerprint,) = res["partialFingerprints"].values()
    gitlab_row = gitlab(root)[0]
    assert fingerprint == gitlab_row["fingerprint"], "one fingerprint for both formats"
    assert run["invocations"][0]["executionSuccessful"] is True


# -- rule pages -------------------------------------------------------------------------------


def test_rule_pages_are_up_to_date() -> None:
    stale = docs_pages.stale()
    assert not stale, (
        f"stale rule pages under docs/rules: {', '.join(stale)}; "
        f"regenerate with: {docs_pages.REGENERATE}"
    )


def test_rule_pages_check_command(tmp_path: Path) -> None:
    page = docs_pages.page("SL105")
    assert page.splitlines()[2] == "# SL105 async-expire-on-commit"
    assert "## Why is this bad?" in page
    assert docs_pages.stale(tmp_path) == sorted(f"{c}.md" for c in _codes())
    docs_pages.write(tmp_path)
    assert docs_pages.stale(tmp_path) == []
    (tmp_path / "SL999.md").write_text("old\n")
    assert docs_pages.stale(tmp_path) == ["SL999.md"]
    docs_pages.write(tmp_path)
    assert not (tmp_path / "SL999.md").exists()


def _codes() -> list[str]:
    from session_lint.rules import ALL_RULES

    return [r.code for r in ALL_RULES]


def test_language_server_links_the_same_pages() -> None:
    from session_lint.editors import language_server

    assert language_server.rule_doc_url is docs_pages.rule_doc_url
    assert docs_pages.rule_doc_url("SL101") == (ROOT / "docs/rules/SL101.md").as_uri()
    assert docs_pages.rule_doc_url("SL999") is None


def test_help_documents_the_output_options(tmp_path: Path) -> None:
    out = cli("--help", cwd=tmp_path).stdout
    for flag in (
        "--show-fixes",
        "--show-settings",
        "--show-files",
        "--output-file",
        "--quiet",
        "--output-format",
        "gitlab",
        "junit",
        "NO_COLOR",
        "--add-noqa",
        "--force-exclude",
        "--no-respect-gitignore",
    ):
        assert flag in out, flag
