"""The flake8 plugin reports exactly what the CLI reports, on every fixture file.

flake8 applies ``# noqa`` itself, so it is compared with the CLI's noqa-filtered
JSON. flake8 never hands a file that does not parse to a plugin (it reports E999
instead), so SL000 is left out of the comparison. The CLI uses one config per run
(the nearest to its first path), the plugin the nearest to each file, so the CLI
runs once per config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from importlib.metadata import entry_points
from pathlib import Path

from session_lint.project.config import find_config_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIRS = (ROOT / "fixtures" / "rules", ROOT / "fixtures" / "apps")

Location = tuple[str, int, int, str]  # (path, line, 1-based column, code)


def fixture_files() -> list[str]:
    files = {p for d in FIXTURE_DIRS for p in d.rglob("*.py")}
    return sorted(p.relative_to(ROOT).as_posix() for p in files)


def plugin_installed() -> bool:
    return any(
        ep.name == "SL" and ep.value.startswith("session_lint.")
        for ep in entry_points(group="flake8.extension")
    )


def flake8_config(tmp_path: Path) -> Path:
    """An isolated flake8 config: none of the repository's excludes (fixtures are
    excluded there on purpose), and the plugin as a local plugin when this
    checkout is not pip-installed (an installed entry point plus a local plugin
    would report everything twice)."""
    lines = ["[flake8]", "max-line-length = 100"]
    if not plugin_installed():
        lines += [
            "[flake8:local-plugins]",
            "extension =",
            "    SL = session_lint.editors.flake8_plugin:Plugin",
            f"paths = {ROOT}",
        ]
    path = tmp_path / "flake8.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_flake8(files: list[str], config: Path, *extra: str) -> set[Location]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flake8",
            "--config",
            str(config),
            "--select",
            "SL",
            "--format",
            "%(path)s|%(row)d|%(col)d|%(code)s",
            *extra,
            *files,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    found: set[Location] = set()
    for line in proc.stdout.splitlines():
        path, row, col, code = line.split("|")
        found.add((path, int(row), int(col), code))
    return found


def run_cli(files: list[str], *extra: str) -> set[Location]:
    groups: dict[Path | None, list[str]] = defaultdict(list)
    for file in files:
        groups[find_config_file([str(ROOT / file)])].append(file)
    found: set[Location] = set()
    for group in groups.values():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "session_lint",
                "--format",
                "json",
                "--no-cache",
                *extra,
                *group,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env(),
            timeout=300,
        )
        assert proc.returncode in (0, 1), proc.stderr
        for row in json.loads(proc.stdout):
            if row["code"] != "SL000":
                found.add((row["path"], row["line"], row["column"], row["code"]))
    return found


def test_flake8_matches_cli_on_every_fixture(tmp_path: Path) -> None:
    files = fixture_files()
    assert files, "no fixture files found"
    # The repository's config excludes fixtures/, which the plugin honours (flake8
    # names every file, as with --force-exclude): those under that config are
    # compared under a copy without the exclude.
    own = ROOT / "pyproject.toml"
    ours = [f for f in files if find_config_file([str(ROOT / f)]) == own]
    theirs = [f for f in files if f not in ours]
    lint = tmp_path / "lint" / "pyproject.toml"
    lint.parent.mkdir()
    lint.write_text(own.read_text().replace('exclude = ["fixtures", ".venv", "build"]', ""))
    flake8_cfg = flake8_config(tmp_path)
    from_flake8 = run_flake8(theirs, flake8_cfg) | run_flake8(
        ours, flake8_cfg, f"--session-lint-config={lint}"
    )
    from_cli = run_cli(theirs) | run_cli(ours, "--config", str(lint))
    assert from_cli, "the fixtures should produce findings"
    assert sorted(from_flake8 - from_cli) == [], "only flake8 reports these"
    assert sorted(from_cli - from_flake8) == [], "only the CLI reports these"


def test_flake8_plugin_options_and_noqa(tmp_path: Path) -> None:
    source = (
        "from sqlalchemy.ext.asyncio import AsyncSession\n"
        "\n"
        "\n"
        "async def a(engine):\n"
        "    async with AsyncSession(engine) as s:\n"
        "        await s.commit()\n"
        "\n"
        "\n"
        "async def b(engine):\n"
        "    async with AsyncSession(engine) as s:  # noqa: SL101\n"
        "        await s.commit()\n"
    )
    file = tmp_path / "app" / "handlers.py"
    file.parent.mkdir()
    file.write_text(source)
    config = flake8_config(tmp_path)
    found = run_flake8([str(file)], config)
    assert found == {(str(file), 5, 16, "SL101")}
    # --session-lint-config points the plugin at a config that turns SL101 off.
    lint_config = tmp_path / "lint.toml"
    lint_config.write_text('ignore = ["SL101"]\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flake8",
            "--config",
            str(config),
            "--select",
            "SL",
            f"--session-lint-config={lint_config}",
            str(file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plugin_in_process_columns_are_zero_based() -> None:
    from session_lint.editors.flake8_plugin import Plugin

    lines = [
        "# -*- coding: latin-1 -*-\n",
        "from sqlalchemy.orm import Session\n",
        "x = 'café'; s = Session(e)\n",
    ]
    results = list(Plugin(None, lines, "app/x.py").run())
    assert [(line, col, msg.split()[0]) for line, col, msg, _ in results] == [(3, 16, "SL101")]
    assert all(kind is Plugin for *_, kind in results)
    assert re.match(r"\d+\.\d+", Plugin.version)


def test_entry_point_declared() -> None:
    # flake8 needs the code prefix to match [A-Z]{1,3}[0-9]{0,3}.
    text = (ROOT / "pyproject.toml").read_text()
    assert 'SL = "session_lint.editors.flake8_plugin:Plugin"' in text
