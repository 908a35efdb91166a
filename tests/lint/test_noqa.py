"""``# noqa``: the CLI reads every form as flake8 does (flake8 filters the plugin's
findings itself), on the lines flake8 reads, and ``--add-noqa`` writes comments
that both then honour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lint.test_flake8 import env, flake8_config, run_flake8

ROOT = Path(__file__).resolve().parents[2]
HEAD = "from sqlalchemy.ext.asyncio import AsyncSession\n\n\nasync def f(s: AsyncSession):\n"

# comment -> whether flake8 silences an SL403 with it (flake8 7's grammar).
FORMS = {
    "# noqa": True,
    "# NOQA": True,
    "# noqa:SL403": True,
    "# noqa: SL403": True,
    "# noqa: SL4": True,
    "# noqa: E501,SL403": True,
    "# noqa: E501 SL403": True,
    "# noqa:E501, SL403": True,
    "# noqa: SL403 because the caller awaits": True,
    "# noqa:  SL403": True,  # two spaces: not a code list, so a bare noqa
    "# noqa: FOO": True,  # not a code list: a bare noqa
    "# noqa: E501": False,
    "# noqa:sl403": False,  # codes are compared as written
    "# noqa: SL4O3": False,  # letter O
    "#noqa": False,
    "#noqa : SL403": False,
    "# noqa : SL403": True,  # "# noqa" then text: a bare noqa
    "# noqa-SL403": True,
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "session_lint", "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )


def cli_lines(files: list[Path], cwd: Path) -> set[tuple[str, int, str]]:
    proc = cli("--format", "json", *map(str, files), cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    return {(Path(f["path"]).name, f["line"], f["code"]) for f in json.loads(proc.stdout)}


def flake8_lines(files: list[Path], tmp_path: Path) -> set[tuple[str, int, str]]:
    found = run_flake8([str(f) for f in files], flake8_config(tmp_path))
    return {(Path(path).name, row, code) for path, row, _, code in found}


def test_every_noqa_form_is_read_as_flake8_reads_it(tmp_path: Path) -> None:
    files = []
    for index, comment in enumerate(FORMS):
        path = tmp_path / f"form_{index}.py"
        path.write_text(f"{HEAD}    s.commit()  {comment}\n", encoding="utf-8")
        files.append(path)
    expected = {
        (f"form_{i}.py", 5, "SL403") for i, silenced in enumerate(FORMS.values()) if not silenced
    }
    # Those two name no SL code: SL001 says so, in flake8 as in the CLI.
    comments = list(FORMS)
    expected |= {
        (f"form_{comments.index(c)}.py", 5, "SL001") for c in ("# noqa:sl403", "# noqa: SL4O3")
    }
    assert flake8_lines(files, tmp_path) == expected, "flake8 reads the forms as listed"
    assert cli_lines(files, tmp_path) == expected


def test_noqa_is_read_on_the_tokenizer_lines(tmp_path: Path) -> None:
    """A form feed and a U+2028 inside a string do not start a line; a noqa after a
    multi-line string or a backslash continuation covers all its lines."""
    source = (
        HEAD
        + '    label = "a\u2028b"\n'  # 5
        + "    \f\n"  # 6: a form feed on a blank line
        + "    s.commit()  # noqa: SL403\n"  # 7: silenced
        + "    s.flush()\n"  # 8: reported
        + '    await s.execute("""SELECT\n'  # 9: silenced by the noqa on 10
        + '    1""")  # noqa: SL501\n'
        + "    x = 1 + \\\n"  # 11
        + "        2; s.commit()  # noqa: SL403\n"  # 12: silenced
        + '    await s.execute("SELECT 3")\n'  # 13: reported
    )
    path = tmp_path / "lines.py"
    path.write_bytes(source.encode("utf-8"))
    expected = {("lines.py", 8, "SL403"), ("lines.py", 13, "SL501")}
    assert flake8_lines([path], tmp_path) == expected
    assert cli_lines([path], tmp_path) == expected


ADOPT = (
    HEAD
    + "    s.commit()  # noqa: E501\n"
    + "    s.flush()\n"
    + '    await s.execute("""SELECT\n'
    + '    1""")\n'
    + "    await s.execute(\n"
    + '        "SELECT 2"\n'
    + "    )\n"
    + "    x = 1 + \\\n"
    + "        2; s.commit()\n"
    + '    await s.execute("SELECT 4")  # noqa\n'
)


@pytest.mark.parametrize(
    ("newline", "encoding"), [("\n", "utf-8"), ("\r\n", "utf-8"), ("\n", "latin-1")]
)
def test_add_noqa_silences_every_finding_once(
    tmp_path: Path, newline: str, encoding: str
) -> None:
    header = "# -*- coding: latin-1 -*-\n# café\n" if encoding == "latin-1" else ""
    text = (header + ADOPT).replace("\n", newline)
    path = tmp_path / "app.py"
    path.write_bytes(text.encode(encoding))
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"def f(:\n    s.commit()\n")
    (tmp_path / "pyproject.toml").write_text("[tool.session-lint]\n", encoding="utf-8")

    before = cli_lines([path], tmp_path)
    assert len(before) == 5
    first = cli("--add-noqa", ".", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Added 5 noqa comments." in first.stderr
    after = path.read_bytes()
    assert broken.read_bytes() == b"def f(:\n    s.commit()\n", "a file that does not parse"
    expected = (
        header
        + HEAD
        + "    s.commit()  # noqa: E501, SL403\n"
        + "    s.flush()  # noqa: SL403\n"
        + '    await s.execute("""SELECT\n'
        + '    1""")  # noqa: SL501\n'
        + "    await s.execute(\n"
        + '        "SELECT 2"  # noqa: SL501\n'
        + "    )\n"
        + "    x = 1 + \\\n"
        + "        2; s.commit()  # noqa: SL403\n"
        + '    await s.execute("SELECT 4")  # noqa\n'
    )
    assert after == expected.replace("\n", newline).encode(encoding)
    assert cli_lines([path], tmp_path) == set()
    assert flake8_lines([path], tmp_path) == set()
    again = cli("--add-noqa", ".", cwd=tmp_path)
    assert "Added 0 noqa comments." in again.stderr
    assert path.read_bytes() == after, "idempotent"


def test_add_noqa_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(f"{HEAD}    s.commit()\n", encoding="utf-8")
    for args in (["--fix"], ["--diff"]):
        proc = cli("--add-noqa", *args, ".", cwd=tmp_path)
        assert proc.returncode == 2
        assert "--add-noqa cannot be combined" in proc.stderr
    stdin = cli("--add-noqa", "-", cwd=tmp_path)
    assert stdin.returncode == 2 and "name paths" in stdin.stderr
    assert (tmp_path / "app.py").read_text(encoding="utf-8") == f"{HEAD}    s.commit()\n"


def test_unused_noqa_reports_only_codes_whose_rule_ran(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(
        HEAD
        + "    s.commit()  # noqa: SL403\n"  # used
        + "    s.flush()  # noqa: E501, SL101\n"  # SL101 ran and found nothing here
        + "    x = 1  # noqa: SL502  # why\n",  # SL502 found nothing either
        encoding="utf-8",
    )
    everything = cli_lines([path], tmp_path)
    assert everything == {("app.py", 6, "SL403"), ("app.py", 6, "SL001"), ("app.py", 7, "SL001")}
    assert flake8_lines([path], tmp_path) == everything
    # SL101 and SL502 not selected: their codes may be needed by another run.
    selected = cli("--format", "json", "--select", "SL001,SL403", str(path), cwd=tmp_path)
    assert {(f["line"], f["code"]) for f in json.loads(selected.stdout)} == {(6, "SL403")}
    fixed = cli("--fix", "--select", "SL001,SL101,SL502", str(path), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert path.read_text(encoding="utf-8").endswith(
        "    s.commit()  # noqa: SL403\n    s.flush()  # noqa: E501\n    x = 1  # why\n"
    )
