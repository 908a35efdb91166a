"""What the effect summaries cost on the real-code corpus: per package, the project
index built cold (no cache) with its effect pass timed apart, its peak memory, the
effect pass's share, and a cached build (the index read from
``.session_lint_cache``).

    python bench/effects_bench.py [--dir DIR] [--runs N]

Times are the minimum of N runs (default 3) in this process; memory is the peak
traced by ``tracemalloc`` during one cold build. See docs/project-index.md,
"Effect summaries".
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.corpus`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus.fetch import FetchError, fetch
from session_lint.known import DEFAULT_SLOW_CALLS
from session_lint.project import index as index_module
from session_lint.project.effects import learn_effects
from session_lint.project.index import build_index


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(root: Path, runs: int) -> tuple[float, float, float, float, int]:
    files = index_module._project_files(root)  # noqa: SLF001 - the index's own file walk

    def cold() -> object:
        index_module._FILE_MEMO.clear()  # noqa: SLF001 - a resident process keeps these
        return build_index(str(root), use_cache=False)

    whole = best(runs, cold)
    effects = best(runs, lambda: learn_effects(files, {}, DEFAULT_SLOW_CALLS))
    tracemalloc.start()
    cold()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cache = root / ".session_lint_cache"
    shutil.rmtree(cache, ignore_errors=True)
    build_index(str(root))  # writes the cache
    cached = best(runs, lambda: build_index(str(root)))
    shutil.rmtree(cache, ignore_errors=True)
    found = len(build_index(str(root), use_cache=False).effects)
    return whole, effects, cached, peak / 2**20, found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="corpus directory (default: .corpus/ at the repo root)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        trees = fetch(args.dir)
    except FetchError as exc:
        print(exc, file=sys.stderr)
        return 2
    head = f"{'package':<28} {'files':>6} {'index cold':>11} {'effects':>8} {'share':>6} {'cached':>8} {'peak MiB':>9} {'summaries':>10}"
    print(head)
    print("-" * len(head))
    for tree in trees:
        whole, effects, cached, peak, found = measure(tree.root, args.runs)
        print(
            f"{tree.package.name:<28} {tree.files:>6} {whole:>10.2f}s {effects:>7.2f}s "
            f"{effects / whole:>6.0%} {cached:>7.3f}s {peak:>9.1f} {found:>10}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
