"""The linter over real code it has never seen: the installed SQLAlchemy package and
the running interpreter's standard library, ``test/`` included (that is where the
odd files live: bad encodings, syntax errors on purpose, generated data).

Through the CLI in a subprocess, as CI and users run it. Asserts: exit 0, no
message on stderr (no internal error, no crash), and every SL000 on a file that
CPython itself cannot compile, except the files listed in
:data:`LIBCST_REJECTS` (libcst cannot parse them although CPython can).
About 30 s on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.core import guard
from session_lint.project.config import Config
from session_lint.project.discovery import discover

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
_SPEC = importlib.util.find_spec("sqlalchemy")  # located, not imported
assert _SPEC is not None and _SPEC.origin is not None, "the dev extra installs SQLAlchemy"
SQLALCHEMY = Path(_SPEC.origin).parent

# Files CPython compiles but libcst 1.9 cannot parse, relative to the stdlib.
LIBCST_REJECTS = {
    # Line 409: `(no_such_global): int`, an annotation whose target is a
    # parenthesised name; libcst's grammar has no parenthesised annotation target.
    "test/test_grammar.py",
}


def cpython_compiles(path: Path) -> bool:
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    # An empty working directory: no project config, every rule on, defaults.
    cwd = tmp_path_factory.mktemp("corpus")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "session_lint",
            "--no-cache",
            "--jobs",
            "2",
            "--exit-zero",
            "--format",
            "json",
            str(SQLALCHEMY),
            str(STDLIB),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_corpus_lints_without_a_crash(corpus_run: subprocess.CompletedProcess[str]) -> None:
    assert corpus_run.stderr == ""
    assert corpus_run.returncode == 0
    findings = json.loads(corpus_run.stdout)
    files = discover([str(SQLALCHEMY), str(STDLIB)], Config(root=str(ROOT))).files
    # site-packages is never walked; the stdlib and SQLAlchemy are ~2,000 files.
    assert not any("site-packages" in f for f in files if not f.startswith(str(SQLALCHEMY)))
    assert len(files) > 1500
    linted = {f["path"] for f in findings}
    assert linted <= set(files)
    print(f"\ncorpus: {len(files)} files linted, {len(findings)} findings, 0 crashes")

    syntax = {Path(f["path"]) for f in findings if f["code"] == "SL000"}
    wrong = sorted(
        str(p)
        for p in syntax
        if cpython_compiles(p) and str(p.relative_to(STDLIB)) not in LIBCST_REJECTS
    )
    assert wrong == [], "SL000 on files CPython compiles"
    # The stdlib's test data has files that are broken on purpose: they are found.
    assert STDLIB / "test" / "tokenizedata" / "bad_coding.py" in syntax
    assert STDLIB / "lib2to3" / "tests" / "data" / "py2_test_grammar.py" in syntax


def test_libcst_rejects_are_still_rejected() -> None:
    # When libcst learns to parse one of them, drop it from the list.
    for relative in LIBCST_REJECTS:
        path = STDLIB / relative
        assert cpython_compiles(path)
        result = analyze(path.read_bytes(), str(path), Config(root="."), use_prefilter=False)
        assert [f.code for f in result.findings] == ["SL000"], relative


def test_huge_generated_file_in_process() -> None:
    """pydoc_data/topics.py (~700 kB of strings) makes libcst's metadata visits
    recurse past the default limit. Parsed and walked in full, it gives no finding
    and no error; a finding in it is still located."""
    path = STDLIB / "pydoc_data" / "topics.py"
    source = path.read_bytes()
    config = Config(root=".")
    result = analyze(source, str(path), config, use_prefilter=False)
    assert result.parsed and result.errors == [] and result.findings == []
    # The import is the evidence of SQLAlchemy without which no rule looks at sessions.
    poisoned = source + (
        b"\n\nfrom sqlalchemy import text\n\n\n"
        b'async def f(session):\n    await session.execute("SELECT 1")\n'
    )
    result = analyze(poisoned, str(path), config)
    assert result.errors == []
    line = poisoned[: poisoned.index(b"await session.execute")].count(b"\n") + 1
    assert [(f.code, f.line) for f in result.findings] == [("SL501", line)]


def test_depth_guard_passes_all_real_code() -> None:
    """The guard that keeps deep expressions from libcst never stops a real file,
    and its screen costs little: ~10 ns a byte, against ~1.5 µs a byte for the
    analysis of a file that is parsed (measured on this corpus)."""
    files = discover([str(SQLALCHEMY), str(STDLIB)], Config(root=str(ROOT))).files
    sources = [Path(f).read_bytes() for f in files]
    started = time.perf_counter()
    screened = [s for s in sources if guard.may_be_too_deep(s)]
    elapsed = time.perf_counter() - started
    total = sum(map(len, sources))
    print(f"\nguard screen: {elapsed / total * 1e9:.1f} ns/byte, {len(screened)} files checked")
    assert len(screened) < len(sources) // 100
    assert elapsed < 5.0  # ~0.4 s for ~40 MB; generous for a shared CI machine
    stopped = [f for f, s in zip(files, sources, strict=True) if guard.check(s) is not None]
    # Only files CPython cannot parse itself may be stopped (none in this corpus).
    assert [f for f in stopped if cpython_compiles(Path(f))] == []
