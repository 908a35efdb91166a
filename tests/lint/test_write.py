"""Writing fixed files: atomic, byte-faithful, and never over someone else's edit."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from session_lint import runner
from session_lint.config import Config
from session_lint.fixes import WriteError, write_atomically
from session_lint.runner import Options, run

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

FIX = Options(fix=True, unsafe_fixes=True, use_cache=False, jobs=1)


def fix_files(root: Path, *names: str) -> runner.RunResult:
    config = Config(root=str(root), select=("SL000", "SL101"))
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
        source: bytes, path: str, config: Config, options: Options
    ) -> runner.FileResult:
        result = real_process(source, path, config, options)
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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into any directory")
def test_unwritable_directory(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    path = tmp_path / "x.py"
    path.write_bytes(b"old\n")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="not fixed"):
            write_atomically(str(path), b"new\n", b"old\n")
    finally:
        tmp_path.chmod(0o755)
