"""The project's own code lints clean with its own configuration: the runtime is the
code every fix rewrites toward, so a finding there is either a bug in it or a false
positive of ours."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.lint.fixture_files import ROOT


def test_repository_lints_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_lint", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed!" in result.stdout


def test_runtime_package_has_no_finding_even_without_ignores() -> None:
    """Only the doctor and the test harness are exempt, and only from SL102/SL104."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "session_lint",
            "--no-cache",
            "--format",
            "json",
            "--config",
            str(ROOT / "tests" / "lint" / "empty_config.toml"),
            "runtime/session_runtime",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = json.loads(result.stdout)
    exempt = (
        "runtime/session_runtime/doctor/",
        "runtime/session_runtime/testing.py",
        "runtime/session_runtime/_servers.py",
    )
    unexpected = [f for f in findings if not f["path"].startswith(exempt)]
    assert unexpected == []
    assert {f["code"] for f in findings} <= {"SL102", "SL104"}
