"""Lint or fix many files with one config: cache, prefilter, process pool.

Every file is read once here. Cached results are served without parsing. The
remaining files that contain none of the enabled rules' tokens are analysed in
this process (that costs one ``compile()`` for SL000, no libcst). Only the
files left after that go to a process pool, and only when there are enough of
them to pay for starting it. Results come back in input order whatever the
pool does. A failure on one file becomes an error of that file, never the end
of the run.
"""

from __future__ import annotations

import difflib
import io
import os
import sys
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from session_lint.cli.cache import Cache
from session_lint.finding import Finding
from session_lint.project.config import Config

if TYPE_CHECKING:
    import multiprocessing.context
    from concurrent.futures import ProcessPoolExecutor

    from session_lint.analyzer import Plan

# The analyzer and the rules import libcst (~0.15 s): a run whose every file is a
# cache hit never imports them, so they are imported where a file is analysed.
# The process pool's modules (~8 ms) are imported where a pool starts, likewise.

# Below this many files to parse, a pool costs more to start than it saves.
POOL_THRESHOLD = 8
RECURSION_LIMIT = 10_000  # libcst recurses per nesting level; deep files need more


@dataclass(frozen=True)
class Options:
    fix: bool = False  # write fixed files
    diff: bool = False  # compute the fixes, write nothing, return diffs
    unsafe_fixes: bool = False
    use_cache: bool = True
    jobs: int = 1
    apply_noqa: bool = True
    # Where --fix may write: the paths given on the command line (a file stands
    # for its directory). Empty: the config's root. A file whose real path is
    # elsewhere (a symlink out of the tree) is left alone.
    write_roots: tuple[str, ...] = ()

    @property
    def fixing(self) -> bool:
        return self.fix or self.diff


@dataclass
class FileResult:
    path: str  # the display path
    findings: list[Finding] = field(default_factory=list)  # what remains to report
    errors: list[str] = field(default_factory=list)
    fixed: int = 0  # fixes applied (or that --diff would apply)
    fixed_codes: dict[str, int] = field(default_factory=dict)  # per code, for --show-fixes
    diff: str = ""
    fixed_source: bytes | None = None  # only when fixing and something changed


@dataclass
class RunResult:
    files: list[FileResult] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.files for f in r.findings]
        out.sort(key=Finding.sort_key)
        return out

    @property
    def errors(self) -> list[str]:
        return [e for r in self.files for e in r.errors]

    @property
    def fixed(self) -> int:
        return sum(r.fixed for r in self.files)

    @property
    def diffs(self) -> list[str]:
        return [r.diff for r in self.files if r.diff]


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ensure_recursion_limit() -> None:
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


# -- one file ----------------------------------------------------------------------


def process_source(
    source: bytes, path: str, config: Config, options: Options, planned: Plan | None = None
) -> FileResult:
    """Analyse (or fix, without writing) one file's bytes; never raises.
    ``planned``: the file's plan, when the caller made it (``run`` does)."""
    try:
        if options.fixing:
            return _fix_one(source, path, config, options, planned)
        from session_lint.analyzer import analyze

        analysis = analyze(source, path, config, apply_noqa=options.apply_noqa, planned=planned)
        return FileResult(path, [f.without_edits() for f in analysis.findings], list(analysis.errors))
    except Exception as exc:  # one broken file must not end the run
        return FileResult(path, errors=[f"{path}: internal error: {type(exc).__name__}: {exc}"])


def _fix_one(
    source: bytes, path: str, config: Config, options: Options, planned: Plan | None
) -> FileResult:
    # The fix layer pulls in libcst.codemod (~0.4 s to import): only when fixing.
    from session_lint.fixes.apply import fix_source

    outcome = fix_source(source, path, config, unsafe=options.unsafe_fixes, planned=planned)
    analysis = outcome.analysis
    result = FileResult(path, errors=list(outcome.errors))
    if analysis is not None:
        result.findings = [f.without_edits() for f in analysis.findings]
        result.errors.extend(analysis.errors)
    if outcome.changed:
        result.fixed = outcome.applied
        result.fixed_codes = dict(outcome.applied_codes)
        result.fixed_source = outcome.source
        if options.diff:
            result.diff = unified_diff(source, outcome.source, path)
    return result


def unified_diff(old: bytes, new: bytes, path: str) -> str:
    a = _decode(old).splitlines(keepends=True)
    b = _decode(new).splitlines(keepends=True)
    out: list[str] = []
    for line in difflib.unified_diff(a, b, fromfile=path, tofile=path):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _decode(source: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError:
        encoding = "utf-8"
    return source.decode(encoding, "replace")


# -- the pool ------------------------------------------------------------------------

_worker_config: Config | None = None
_worker_options: Options | None = None


def _init_worker(config: Config, options: Options) -> None:
    global _worker_config, _worker_options
    ensure_recursion_limit()
    _worker_config, _worker_options = config, options


# A file for the pool: its path, bytes and plan.
_Task = tuple[str, bytes, "Plan | None"]


def _work(task: _Task) -> FileResult:
    assert _worker_config is not None and _worker_options is not None
    path, source, planned = task
    return process_source(source, path, _worker_config, _worker_options, planned)


def _pool_context() -> multiprocessing.context.BaseContext:
    import multiprocessing

    # fork starts workers without re-importing libcst; elsewhere it is unsafe or absent.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run_many(
    tasks: list[_Task],
    config: Config,
    options: Options,
    meanwhile: Callable[[], None] | None = None,
) -> list[FileResult]:
    """Process ``tasks`` (in a pool when worth it), running ``meanwhile`` in this
    process while the pool works; results in task order."""
    meanwhile = meanwhile or _nothing
    jobs = min(options.jobs, len(tasks))
    if jobs > 1 and len(tasks) >= POOL_THRESHOLD:
        # Largest files first, handed out one by one while there are few: a run is
        # as slow as its busiest worker, and file sizes vary a hundredfold.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][1]))
        chunksize = 1 if len(tasks) <= 256 else len(tasks) // (jobs * 16)
        from concurrent.futures.process import BrokenProcessPool

        try:
            with _pool(jobs, config, options) as pool:
                pending = pool.map(_work, [tasks[i] for i in order], chunksize=chunksize)
                meanwhile()
                meanwhile = _nothing
                done = list(pending)
            results: list[FileResult] = [done[0]] * len(tasks)
            for position, index in enumerate(order):
                results[index] = done[position]
            return results
        except BrokenProcessPool:
            # A worker died: libcst's native parser can crash on pathologically
            # nested code. Redo each file alone so the crash costs one file only.
            meanwhile()
            return [_isolated(task, config, options) for task in tasks]
        except OSError:
            pass  # cannot start processes here: do the work in this process
    meanwhile()
    return [process_source(source, path, config, options, p) for path, source, p in tasks]


def _nothing() -> None:
    pass


def _pool(jobs: int, config: Config, options: Options) -> ProcessPoolExecutor:
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        jobs, _pool_context(), initializer=_init_worker, initargs=(config, options)
    )


def _isolated(task: _Task, config: Config, options: Options) -> FileResult:
    from concurrent.futures.process import BrokenProcessPool

    try:
        with _pool(1, config, options) as pool:
            return pool.submit(_work, task).result()
    except BrokenProcessPool:
        return FileResult(
            task[0],
            errors=[
                f"{task[0]}: internal error: the analyzer process crashed on this file "
                "(libcst's parser can crash on extremely deeply nested code)"
            ],
        )


# -- many files ---------------------------------------------------------------------


def run(paths: Sequence[str], config: Config, options: Options) -> RunResult:
    """Lint (or fix) ``paths`` — display paths of existing files — in order.

    With ``options.fix`` the fixed files are written here, atomically, refusing a
    file that changed on disk since it was read.
    """
    results: list[FileResult | None] = [None] * len(paths)
    sources: dict[int, bytes] = {}
    cache = Cache.for_config(config, apply_noqa=options.apply_noqa) if _caching(options) else None
    keys: dict[int, str] = {}
    pending: list[int] = []  # read, not in the cache
    plans: dict[int, Plan] = {}
    heavy: list[int] = []
    cheap: list[int] = []
    for index, path in enumerate(paths):
        try:
            with open(path, "rb") as handle:
                source = handle.read()
        except OSError as exc:
            results[index] = FileResult(path, errors=[f"{path}: cannot read: {_reason(exc)}"])
            continue
        sources[index] = source
        if cache is not None:
            keys[index] = cache.key(source, path)
            hit = cache.get(keys[index], path)
            if hit is not None:
                results[index] = FileResult(path, hit)
                del keys[index]  # nothing new to store
                continue
        pending.append(index)
    if pending:
        # Each file's plan, made once: the analysis takes it from here. The
        # analyzer (and libcst) is imported only when some file missed the cache.
        from session_lint.analyzer import plan
        from session_lint.project.parallel import map_forked
        from session_lint.rules import ALL_RULES

        def plan_of(index: int) -> Plan:
            return plan(sources[index], paths[index], config, ALL_RULES)

        # On a large tree the plans (a search of every file's bytes) are spread
        # over the workers too: the workers see the bytes, only the plans travel.
        for index, planned in zip(pending, map_forked(plan_of, pending, options.jobs), strict=True):
            plans[index] = planned
            (heavy if planned.may_fire else cheap).append(index)

    def cheap_work() -> None:
        # Cheap (no libcst parse unless the file fails to compile); done here while
        # the pool parses the heavy files.
        for index in cheap:
            results[index] = process_source(
                sources[index], paths[index], config, options, plans[index]
            )

    tasks: list[_Task] = [(paths[i], sources[i], plans[i]) for i in heavy]
    done = _run_many(tasks, config, options, cheap_work)
    for index, done_result in zip(heavy, done, strict=True):
        results[index] = done_result
    final = [r for r in results if r is not None]
    for index, result in enumerate(results):
        if result is None:
            continue
        if cache is not None and index in keys and not result.errors:
            cache.put(keys[index], result.findings)
        if options.fix and result.fixed_source is not None:
            _write_fixed(result, sources[index], config, options)
    return RunResult(final)


def _caching(options: Options) -> bool:
    return options.use_cache and not options.fixing


def _write_fixed(result: FileResult, original: bytes, config: Config, options: Options) -> None:
    from session_lint.fixes.write import WriteError, write_atomically

    assert result.fixed_source is not None
    try:
        write_atomically(
            result.path, result.fixed_source, original, within=options.write_roots or (config.root,)
        )
    except (WriteError, OSError) as exc:
        message = str(exc) if isinstance(exc, WriteError) else _reason(exc)
        result.errors.append(
            message if message.startswith(result.path) else f"{result.path}: {message}"
        )
        # Nothing was written: what remains is what the file had.
        again = process_source(
            original, result.path, config, Options(apply_noqa=options.apply_noqa)
        )
        result.findings, result.fixed, result.fixed_source = again.findings, 0, None
        result.fixed_codes = {}


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
