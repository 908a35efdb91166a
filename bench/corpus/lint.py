"""Lint the fetched corpus with the session-lint CLI, as a user would.

Each package tree is its own project: ``python -m session_lint --format json
--no-cache --exit-zero .`` runs with the tree as the working directory (its
``pyproject.toml``, written by ``fetch.py``, holds an empty ``[tool.session-lint]``
table: the defaults, the tree as root). The linter is this checkout's
(``PYTHONPATH``), and the tree is kept off ``sys.path`` (``PYTHONSAFEPATH``), so a
package's own modules never shadow the linter's imports.

Packages are linted a few at a time (one per core, ``--jobs 1`` each, largest
first): the same findings as one run after another, in less time.

Each finding becomes a :class:`Record`. Its ``role`` comes from
``session_lint.project.roles.role_of(path, config, source)`` when that module exists
(``"unknown"`` otherwise), and ``evidence`` tells whether the file shows any sign of
SQLAlchemy (:data:`EVIDENCE`: an import of ``sqlalchemy`` or ``sqlmodel``; a plain
byte regex, good enough for a bench: it also matches such an import in a string or
a comment, and misses code that reaches SQLAlchemy only through another module).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.corpus.fetch import ROOT, Tree

EVIDENCE = re.compile(rb"\b(?:from|import)\s+(?:sqlalchemy|sqlmodel)\b")
# Rules whose finding is its own evidence, in a file that may never import
# SQLAlchemy: SL000 (the file does not parse), SL104 (a database driver's
# ``connect()``), SL306 (calls of project helpers the index saw open a session),
# SL408 (a coroutine the index saw reach a pooled engine, run on a new loop).
OWN_EVIDENCE = frozenset({"SL000", "SL104", "SL306", "SL408"})
FIXABLE = ("safe", "unsafe")
UNKNOWN_ROLE = "unknown"

Key = tuple[str, str, int, str]  # package, path, line, code


class LintError(Exception):
    """The CLI failed on a package (exit code not 0, or a message on stderr)."""


@dataclass(frozen=True)
class Record:
    """One finding of the corpus; ``path`` is relative to the package's tree."""

    package: str
    path: str
    line: int
    column: int
    code: str
    message: str
    fixable: str | None  # "safe", "unsafe" or None
    role: str = UNKNOWN_ROLE
    evidence: bool = True

    @property
    def key(self) -> Key:
        return (self.package, self.path, self.line, self.code)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PackageRun:
    package: str
    root: Path
    records: list[Record]
    seconds: float
    files: int


def cli_command(*args: str, jobs: int | None = None) -> list[str]:
    """``python -m session_lint`` with these arguments (and ``--jobs``)."""
    extra = ["--jobs", str(jobs)] if jobs else []
    return [sys.executable, "-m", "session_lint", *args, *extra]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}
    env.pop("PYTHONWARNINGS", None)
    env["SESSION_LINT_SERVER"] = "off"
    return env


def run_cli(
    root: Path, args: Sequence[str], *, jobs: int | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The CLI with ``root`` as working directory; with ``check``, raises
    :class:`LintError` on an exit code other than 0 or anything on stderr."""
    done = subprocess.run(
        cli_command(*args, jobs=jobs),
        cwd=root,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=900,
    )
    if check and (done.returncode != 0 or done.stderr):
        raise LintError(
            f"{root}: session-lint {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stderr.strip()[-4000:]}"
        )
    return done


def relative_path(path: str) -> str:
    """A path of the JSON report (relative to the working directory) as ``a/b.py``."""
    parts = [p for p in Path(path).as_posix().split("/") if p not in ("", ".")]
    return "/".join(parts)


def fixable_of(entry: dict[str, Any]) -> str | None:
    fix = entry.get("fix")
    if not isinstance(fix, dict):
        return None
    applicability = fix.get("applicability")
    return applicability if applicability in FIXABLE else None


def parse_report(package: str, report: str) -> list[Record]:
    """The JSON report's findings as records (role and evidence not yet known)."""
    return [
        Record(
            package=package,
            path=relative_path(entry["path"]),
            line=entry["line"],
            column=entry["column"],
            code=entry["code"],
            message=entry["message"],
            fixable=fixable_of(entry),
        )
        for entry in json.loads(report)
    ]


RoleOf = Callable[[str, Any, bytes], Any]


def role_function() -> RoleOf | None:
    """``session_lint.project.roles.role_of`` when the module exists (imported lazily)."""
    try:
        roles = importlib.import_module("session_lint.project.roles")
    except ModuleNotFoundError as exc:
        if exc.name != "session_lint.project.roles":
            raise  # the module exists but fails to import: a bug to see, not to hide
        return None
    function = getattr(roles, "role_of", None)
    return function if callable(function) else None


def _project_evidence(source: bytes, path: str, config: Any) -> bool:
    """An import of one of the project's own modules that export a session type or
    factory (``from app.api.utils import DbSession``, the index's evidence
    modules): SQLAlchemy reached through the project, which the regex misses."""
    try:
        from session_lint.project.evidence import has_evidence
    except ImportError:  # an older linter checkout
        return False
    return bool(config.project.evidence_modules) and bool(has_evidence(source, path, config))


def annotate(root: Path, records: list[Record]) -> list[Record]:
    """The records with each file's role and SQLAlchemy evidence filled in."""
    if not records:
        return records
    role_of = role_function()
    config: Any = None
    if role_of is not None:
        from session_lint.project.config import load_config

        config = load_config(["."], cwd=str(root))  # what the CLI loads in this tree
    roles: dict[str, str] = {}
    evidence: dict[str, bool] = {}
    out: list[Record] = []
    for record in records:
        if record.path not in evidence:
            path = root / record.path
            source = path.read_bytes()
            evidence[record.path] = EVIDENCE.search(source) is not None or (
                config is not None and _project_evidence(source, str(path), config)
            )
            if role_of is None:
                roles[record.path] = UNKNOWN_ROLE
            else:
                role = role_of(str(path), config, source)
                roles[record.path] = str(getattr(role, "value", role))
        out.append(
            Record(
                **{
                    **record.as_dict(),
                    "role": roles[record.path],
                    "evidence": evidence[record.path],
                }
            )
        )
    return out


def lint_tree(tree: Tree, *, jobs: int | None = None) -> PackageRun:
    started = time.perf_counter()
    done = run_cli(tree.root, ["--format", "json", "--no-cache", "--exit-zero", "."], jobs=jobs)
    seconds = time.perf_counter() - started
    records = annotate(tree.root, parse_report(tree.package.name, done.stdout))
    return PackageRun(tree.package.name, tree.root, records, seconds, tree.files)


def lint_corpus(trees: Sequence[Tree], *, workers: int | None = None) -> list[PackageRun]:
    """Every tree linted, in the order given; ``workers`` packages at a time
    (default: one per core), each with ``--jobs 1``; with ``workers=1``, one after
    another with the CLI's default jobs."""
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return [lint_tree(tree) for tree in trees]
    by_size = sorted(trees, key=lambda t: -t.files)  # the longest runs start first
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = dict(zip(by_size, pool.map(lambda t: lint_tree(t, jobs=1), by_size), strict=True))
    return [runs[tree] for tree in trees]


def records_of(runs: Sequence[PackageRun]) -> list[Record]:
    return [record for run in runs for record in run.records]
