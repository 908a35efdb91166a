"""Writing fixed files: atomic, byte-faithful, and never over someone else's edit."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from session_lint.analyzer import Plan
from session_lint.cli import runner
from session_lint.cli.runner import Options, run
from session_lint.fixes.write import WriteError, write_atomically
from session_lint.project.config import Config
from tests.lint.fixture_files import index_from_requirements

BEFORE = (
    "from sqlalchemy.ext.asyncio import AsyncSession\n"
    "\n"
    "\n"
    "async def handler(engine):\n"
    "    # café: the comment stays\n"
    "    async with AsyncSession(engine) as s:\n"
    "        await s.commit()\n"
)
AFTER = BEFORE.replace(
    "AsyncSession\n\n", "AsyncSession\nfrom session_runtime import get_session\n\n", 1
).replace("AsyncSession(engine)", "get_session()")

ROOT = Path(__file__).resolve().parents[2]
# The SL101 fix imports session_runtime: these projects declare it.
PROJECT = index_from_requirements(["session-runtime"])
FIX = Options(fix=True, unsafe_fixes=True, use_cache=False, jobs=1)


def fix_files(root: Path, *names: str) -> runner.RunResult:
    config = Config(root=str(root), select=("SL000", "SL101"), project=PROJECT)
    return run([str(root / n) for n in names], config, FIX)


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("utf8.py", lambda text: text.encode()),
        ("bom.py", lambda text: b"\xef\xbb\xbf" + text.encode()),
        ("crlf.py", lambda text: text.replace("\n", "\r\n").encode()),
        (
            "latin1.py",
            lambda text: ("# -*- coding: latin-1 -*-\n" + text).encode("latin-1"),
        ),
        ("no_final_newline.py", lambda text: text.rstrip("\n").encode()),
        (
            "bom_crlf_no_final_newline.py",
            lambda text: b"\xef\xbb\xbf" + text.rstrip("\n").replace("\n", "\r\n").encode(),
        ),
    ],
)
def test_fix_keeps_encoding_bom_line_endings(
    tmp_path: Path, name: str, encode: Callable[[str], bytes]
) -> None:
    (tmp_path / name).write_bytes(encode(BEFORE))
    result = fix_files(tmp_path, name)
    assert result.errors == []
    assert result.fixed == 1
    assert (tmp_path / name).read_bytes() == encode(AFTER)
    # Nothing left behind: no temp files beside the fixed one.
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_fix_keeps_mode_and_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text(BEFORE)
    real.chmod(0o640)
    (tmp_path / "link.py").symlink_to(real)
    result = fix_files(tmp_path, "link.py")
    assert result.errors == [] and result.fixed == 1
    assert (tmp_path / "link.py").is_symlink()
    assert real.read_text() == AFTER
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_refuses_a_file_changed_during_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "busy.py"
    other = tmp_path / "other.py"
    target.write_text(BEFORE)
    other.write_text(BEFORE)
    edited = BEFORE + "# someone saved the file meanwhile\n"
    real_process = runner.process_source

    def process_and_edit(
        source: bytes, path: str, config: Config, options: Options, planned: Plan | None = None
    ) -> runner.FileResult:
        result = real_process(source, path, config, options, planned)
        if path.endswith("busy.py"):
            target.write_text(edited)  # an editor saves while we are fixing
        return result

    monkeypatch.setattr(runner, "process_source", process_and_edit)
    result = fix_files(tmp_path, "busy.py", "other.py")
    assert target.read_text() == edited
    assert other.read_text() == AFTER  # the rest of the run goes on
    assert result.errors == [f"{target}: changed on disk during the run; not fixed"]
    assert result.fixed == 1
    # What was not fixed is still reported.
    assert [(f.path, f.code) for f in result.findings] == [(str(target), "SL101")]


@pytest.mark.parametrize("change", ["deleted", "replaced_by_symlink", "made_read_only"])
def test_other_changes_during_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    target = tmp_path / "busy.py"
    target.write_text(BEFORE)
    elsewhere = BEFORE + "# another file\n"
    (tmp_path / "elsewhere.py").write_text(elsewhere)
    real_process = runner.process_source

    def process_and_change(
        source: bytes, path: str, config: Config, options: Options, planned: Plan | None = None
    ) -> runner.FileResult:
        result = real_process(source, path, config, options, planned)
        if options.fix:  # not when the runner re-analyses the file it did not write
            change_file()
        return result

    def change_file() -> None:
        if change == "deleted":
            target.unlink()
        elif change == "replaced_by_symlink":
            target.unlink()
            target.symlink_to(tmp_path / "elsewhere.py")
        else:
            target.chmod(0o444)

    monkeypatch.setattr(runner, "process_source", process_and_change)
    result = fix_files(tmp_path, "busy.py")
    assert len(result.errors) == 1 and result.errors[0].startswith(f"{target}: ")
    assert result.errors[0].endswith(
        {
            "deleted": "cannot re-read before writing: No such file or directory",
            "replaced_by_symlink": "changed on disk during the run; not fixed",
            "made_read_only": "not writable; not fixed",
        }[change]
    )
    assert result.fixed == 0
    assert (tmp_path / "elsewhere.py").read_text() == elsewhere
    assert target.exists() == (change != "deleted")


def test_refuses_a_read_only_file(tmp_path: Path) -> None:
    locked = tmp_path / "locked.py"
    locked.write_text(BEFORE)
    locked.chmod(0o444)
    (tmp_path / "open.py").write_text(BEFORE)
    result = fix_files(tmp_path, "locked.py", "open.py")
    assert result.errors == [f"{locked}: not writable; not fixed"]
    assert locked.read_text() == BEFORE
    assert stat.S_IMODE(locked.stat().st_mode) == 0o444
    assert (tmp_path / "open.py").read_text() == AFTER
    assert [f.path for f in result.findings] == [str(locked)]
    assert result.fixed == 1


def test_write_atomically_directly(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_bytes(b"old\n")
    with pytest.raises(WriteError, match="changed on disk"):
        write_atomically(str(path), b"new\n", b"older\n")
    assert path.read_bytes() == b"old\n"
    write_atomically(str(path), b"new\n", b"old\n")
    assert path.read_bytes() == b"new\n"
    with pytest.raises(WriteError, match="cannot re-read"):
        write_atomically(str(tmp_path / "gone.py"), b"new\n", b"old\n")


def test_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file cannot be created beside the file (a read-only directory for
    a normal user). Root may create files anywhere, so the refusal is produced
    where it happens, in ``mkstemp``, and for one directory only."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "open").mkdir()
    (tmp_path / "locked" / "x.py").write_text(BEFORE)
    (tmp_path / "open" / "x.py").write_text(BEFORE)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(prefix: str, suffix: str, dir: str) -> tuple[int, str]:
        if Path(dir) == tmp_path / "locked":
            raise PermissionError(errno.EACCES, "Permission denied", dir)
        return real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    result = fix_files(tmp_path, "locked/x.py", "open/x.py")
    locked = tmp_path / "locked" / "x.py"
    assert result.errors == [
        f"{locked}: cannot write next to the file: Permission denied; not fixed"
    ]
    assert locked.read_text() == BEFORE
    assert (tmp_path / "open" / "x.py").read_text() == AFTER
    assert [f.path for f in result.findings] == [str(locked)]
    assert sorted(p.name for p in (tmp_path / "locked").iterdir()) == ["x.py"]


def test_parent_that_is_a_file(tmp_path: Path) -> None:
    # Without patching: a path through a regular file cannot be re-read or written.
    (tmp_path / "plain").write_text("x = 1\n")
    with pytest.raises(WriteError, match="cannot re-read"):
        write_atomically(str(tmp_path / "plain" / "x.py"), b"new\n", b"old\n")
    assert (tmp_path / "plain").read_text() == "x = 1\n"


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_the_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Atomic: a disk full while writing the temp file, or a failed rename, leaves
    the original bytes in place and nothing beside them."""
    (tmp_path / "x.py").write_text(BEFORE)

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    result = fix_files(tmp_path, "x.py")
    assert result.errors == [f"{tmp_path / 'x.py'}: No space left on device"]
    assert (tmp_path / "x.py").read_text() == BEFORE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.py"]
    assert result.fixed == 0 and [f.code for f in result.findings] == ["SL101"]


def test_readers_see_old_or_new_bytes_never_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.py"
    path.write_text(BEFORE)
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        # Just before the rename: the file is whole and old, the temp file whole and new.
        seen.append((Path(dst).read_text(), Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert fix_files(tmp_path, "x.py").errors == []
    assert seen == [(BEFORE, AFTER)]
    assert path.read_text() == AFTER


def test_symlink_out_of_the_tree_is_not_written(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "app").mkdir(parents=True)
    (elsewhere / "vendor").mkdir(parents=True)
    shared = elsewhere / "shared.py"
    shared.write_text(BEFORE)
    (elsewhere / "vendor" / "mod.py").write_text(BEFORE)
    (project / "app" / "link.py").symlink_to(shared)  # a file link out of the tree
    (project / "app" / "vendor").symlink_to(elsewhere / "vendor")  # a directory link
    (project / "app" / "own.py").write_text(BEFORE)
    config = Config(root=str(project), select=("SL000", "SL101"), project=PROJECT)
    paths = [str(project / "app" / n) for n in ("link.py", "own.py", "vendor/mod.py")]
    options = Options(
        fix=True, unsafe_fixes=True, use_cache=False, write_roots=(str(project / "app"),)
    )
    result = run(paths, config, options)
    assert result.errors == [
        f"{paths[0]}: resolves to {shared}, outside the linted tree; not fixed",
        f"{paths[2]}: resolves to {elsewhere / 'vendor' / 'mod.py'}, outside the linted tree; "
        "not fixed",
    ]
    assert shared.read_text() == BEFORE
    assert (elsewhere / "vendor" / "mod.py").read_text() == BEFORE
    assert (project / "app" / "own.py").read_text() == AFTER
    assert (project / "app" / "link.py").is_symlink()
    # Named on the command line (through the directory link), the file is the
    # user's explicit choice: it is fixed.
    named = run(
        [paths[2]],
        config,
        Options(fix=True, unsafe_fixes=True, use_cache=False, write_roots=(paths[2],)),
    )
    assert named.errors == [] and named.fixed == 1
    assert (elsewhere / "vendor" / "mod.py").read_text() == AFTER


def test_symlink_out_of_the_tree_through_the_cli(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "app").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\ndependencies = ["session-runtime"]\n\n'
        '[tool.session-lint]\nselect = ["SL101"]\n'
    )
    (elsewhere / "shared.py").write_text(BEFORE)
    (project / "app" / "link.py").symlink_to(elsewhere / "shared.py")
    (project / "app" / "inside.py").write_text(BEFORE)
    (project / "app" / "link_inside.py").symlink_to(project / "app" / "inside.py")
    proc = subprocess.run(
        [sys.executable, "-m", "session_lint", "--no-cache", "--fix", "--unsafe-fixes", "app"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"session-lint: error: app/link.py: resolves to {elsewhere / 'shared.py'}, "
        "outside the linted tree; not fixed"
    ]
    assert proc.stdout.startswith("app/link.py:6:16: SL101 ")
    assert (elsewhere / "shared.py").read_text() == BEFORE
    assert (project / "app" / "inside.py").read_text() == AFTER


@pytest.mark.parametrize("name", ["latin1.py", "crlf.py", "bom.py", "locked.py", "link.py"])
def test_diff_never_writes(tmp_path: Path, name: str) -> None:
    data = {
        "latin1.py": ("# -*- coding: latin-1 -*-\n" + BEFORE).encode("latin-1"),
        "crlf.py": BEFORE.replace("\n", "\r\n").encode(),
        "bom.py": b"\xef\xbb\xbf" + BEFORE.encode(),
    }.get(name, BEFORE.encode())
    path = tmp_path / name
    if name == "link.py":
        (tmp_path / "real.py").write_bytes(data)
        path.symlink_to(tmp_path / "real.py")
    else:
        path.write_bytes(data)
    if name == "locked.py":
        path.chmod(0o444)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    config = Config(root=str(tmp_path), select=("SL000", "SL101"), project=PROJECT)
    result = run([str(path)], config, Options(diff=True, unsafe_fixes=True, use_cache=False))
    assert result.errors == [] and result.fixed == 1
    (diff,) = result.diffs
    assert "-    async with AsyncSession(engine) as s:" in diff
    assert "+    async with get_session() as s:" in diff
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(
    "source",
    [
        # The fixed text still holds what the rule's prefilter looks for: the
        # re-lint parses it, and that parse is the check.
        "session_probe = 1\nother = session_probe\n",
        # It no longer does: the re-lint skips the parse, the check parses alone.
        "session_probe = 1\n",
    ],
)
def test_a_fix_whose_result_does_not_parse_is_refused(source: str) -> None:
    from typing import ClassVar

    import libcst as cst

    from session_lint.finding import Applicability, Fix
    from session_lint.fixes.apply import fix_source
    from session_lint.rules.base import Rule

    class Breaks(Rule):
        code: ClassVar[str] = "SL999"
        name: ClassVar[str] = "breaks"
        message: ClassVar[str] = "a probe whose fix breaks the file"
        tokens: ClassVar[tuple[str, ...]] = ("session_probe",)
        needs_evidence: ClassVar[bool] = False

        def visit_Assign(self, node: cst.Assign) -> None:
            target = node.targets[0].target
            if isinstance(target, cst.Name) and target.value == "session_probe":
                # A keyword where an expression goes: codegen writes it, no parser reads it.
                broken = cst.SimpleStatementLine([cst.Expr(cst.Name("lambda"))])
                statement = self.ctx.ancestors[-2]
                self.report(node, fix=Fix.replace(statement, broken, Applicability.SAFE))

    outcome = fix_source(source.encode(), "app.py", Config(), [Breaks])
    assert outcome.source == source.encode()
    assert outcome.applied == 0
    assert outcome.errors == [
        "app.py: fix for SL999 produced code that does not parse (ParserSyntaxError); "
        "file left unchanged"
    ]
