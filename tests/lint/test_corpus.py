"""The linter over real code it has never seen: the installed SQLAlchemy package and
the running interpreter's standard library, ``test/`` included where the
interpreter ships it (that is where the odd files live: bad encodings, syntax
errors on purpose, generated data; Debian's own Python ships it separately), and
a few files broken on purpose of our own, so that no packaging leaves them out.

Through the CLI in a subprocess, as CI and users run it. Asserts: exit 0, no
message on stderr (no internal error, no crash), every file a plain walk finds is
linted (but what discovery skips on purpose), and SL000 exactly on the files
CPython itself cannot compile, except the files listed in :data:`LIBCST_REJECTS`
(libcst cannot parse them although CPython can). About 30 s on two cores.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.core import guard
from session_lint.project.config import Config
from session_lint.project.discovery import discover
from tests.lint.test_fuzz import compiles

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
# What those files hold that libcst rejects.
LIBCST_REJECTED_CODE = b"(no_such_global): int\n"
# Broken on purpose: a misspelt coding cookie, Python 2, a NUL byte.
BROKEN = {
    "bad_coding.py": b"# -*- coding: uft-8 -*-\nx = 1\n",
    "py2.py": b"print 'hello'\nexec code in ns\n",
    "nul.py": b"x = 1\x00\n",
}


def cpython_compiles(path: Path) -> bool:
    return compiles(path.read_bytes())


def cpython_parses(path: Path) -> bool:
    """What SL000 answers: whether CPython's parser takes the file (``compile``
    finds more, such as a ``return`` outside a function)."""
    try:
        with warnings.catch_warnings():  # invalid escapes in old test data
            warnings.simplefilter("ignore")
            ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True



@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("broken")
    for name, data in BROKEN.items():
        (directory / name).write_bytes(data)
    return directory


@pytest.fixture(scope="module")
def corpus_run(
    tmp_path_factory: pytest.TempPathFactory, broken: Path
) -> subprocess.CompletedProcess[str]:
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
            str(broken),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_corpus_lints_without_a_crash(
    corpus_run: subprocess.CompletedProcess[str], broken: Path
) -> None:
    assert corpus_run.stderr == ""
    assert corpus_run.returncode == 0
    findings = json.loads(corpus_run.stdout)
    roots = (SQLALCHEMY, STDLIB, broken)
    files = discover([str(r) for r in roots], Config(root=str(ROOT))).files
    # site-packages is never walked.
    assert not any("site-packages" in f for f in files if not f.startswith(str(SQLALCHEMY)))
    # Every file a plain walk finds is linted, but what discovery skips on purpose:
    # a directory excluded by default (``venv``), and a second path to a file it
    # already took (a symlink). The stdlib and SQLAlchemy are ~900 to ~2,000 files,
    # as the interpreter ships its tests or not.
    walked = {
        p: p.relative_to(root).parts
        for root in roots
        for p in root.rglob("*.py*")
        if p.suffix in (".py", ".pyi") and "site-packages" not in p.relative_to(root).parts
    }
    taken = {Path(f) for f in files}
    assert taken <= walked.keys() and len(taken) > 900
    real = {p.resolve() for p in taken}
    missed = [p for p in walked.keys() - taken if "venv" not in walked[p] and p.resolve() not in real]
    assert missed == []
    linted = {f["path"] for f in findings}
    assert linted <= set(files)
    print(f"\ncorpus: {len(files)} files linted, {len(findings)} findings, 0 crashes")

    # SL000 exactly where CPython cannot compile the file (libcst's few rejects aside).
    syntax = {Path(f["path"]) for f in findings if f["code"] == "SL000"}
    rejected = {STDLIB / relative for relative in LIBCST_REJECTS}
    assert sorted(str(p) for p in syntax - rejected if cpython_compiles(p)) == [], (
        "SL000 on files CPython compiles"
    )
    assert sorted(str(p) for p in taken - syntax if not cpython_parses(p)) == [], (
        "no SL000 on files CPython cannot parse"
    )
    assert {broken / name for name in BROKEN} <= syntax


def test_libcst_rejects_are_still_rejected() -> None:
    # When libcst learns to parse this, drop the files from LIBCST_REJECTS.
    assert compiles(LIBCST_REJECTED_CODE)
    result = analyze(LIBCST_REJECTED_CODE, "app/x.py", Config(root="."), use_prefilter=False)
    assert [f.code for f in result.findings] == ["SL000"]
    for relative in LIBCST_REJECTS:  # where the interpreter ships them
        path = STDLIB / relative
        if path.exists():
            assert LIBCST_REJECTED_CODE.strip() in path.read_bytes()


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
