"""A cold and a warm run on large real code, against reading the files once.

    python bench/large_bench.py [--dir DIR] [--runs N] [NAME ...]

The trees are the three largest packages of the pinned real-code corpus
(``bench/corpus/packages.toml``: fetched by version and sha256 like the corpus,
into ``$SESSION_LINT_CORPUS_DIR`` or ``.corpus/``). For each, in the same run and
interleaved (A B C D, A B C D, ...), the median of N runs (default 3) of:

- ``ast.parse`` of every ``.py`` file once, in one process: the floor, what any
  Python tool pays to read the tree;
- ``session-lint --no-cache`` (cold: CI and pre-commit's ``--all-files``), with
  every rule on (``--select SL``);
- ``session-lint`` with its cache filled (warm);
- ``ruff check --no-cache --select ASYNC`` when ruff is on ``PATH`` or in the
  virtualenv.

and the ratios the targets are stated in (docs/architecture.md, "Large trees"):
cold ≤ 4 x the ``ast.parse`` floor.

session-lint's modules are compiled to bytecode first, as installing a wheel
does: with ``PYTHONDONTWRITEBYTECODE`` set, an editable install would otherwise
compile every module from source in every run (about 0.1 s).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.corpus`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus.fetch import FetchError, Tree, fetch

LARGE = ("cognee", "prefect", "langflow-base")
BIN = Path(sys.executable).parent
_PARSE_ALL = """
import ast, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).rglob("*.py")):
    try:
        ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        pass
"""


def lines_of(root: Path) -> tuple[int, int]:
    files = sorted(root.rglob("*.py"))
    return len(files), sum(p.read_bytes().count(b"\n") for p in files)


def timed(command: Sequence[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    return elapsed


def commands(work: Path) -> dict[str, list[str]]:
    lint = [sys.executable, "-m", "session_lint", "--exit-zero", "-q", "--select", "SL"]
    out = {
        "ast.parse every file": [sys.executable, "-c", _PARSE_ALL, str(work)],
        "session-lint cold": [*lint, "--no-cache", "."],
        "session-lint warm": [*lint, "."],
    }
    ruff = shutil.which("ruff") or (str(BIN / "ruff") if (BIN / "ruff").exists() else None)
    if ruff:
        out["ruff --select ASYNC"] = [ruff, "check", "--no-cache", "--exit-zero", "-q",
                                      "--select", "ASYNC", "."]  # fmt: skip
    return out


def measure(tree: Tree, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="session-lint-large-") as tmp:
        work = Path(tmp) / tree.package.key
        shutil.copytree(tree.root, work)  # the cache never touches the fetched tree
        todo = commands(work)
        timed(todo["session-lint warm"], work)  # fill the cache
        samples: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(runs):
            for name, command in todo.items():
                samples[name].append(timed(command, work))
        return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: {' '.join(LARGE)}")
    parser.add_argument("--dir", help="corpus directory (default: $SESSION_LINT_CORPUS_DIR or .corpus/)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        trees = fetch(args.dir, args.names or LARGE)
    except FetchError as exc:
        print(f"fetch failed: {exc}", file=sys.stderr)
        return 1
    spec = importlib.util.find_spec("session_lint")
    if spec is not None and spec.submodule_search_locations:
        compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)
    for tree in trees:
        files, lines = lines_of(tree.root)
        print(f"{tree.package.key}: {files} files, {lines:,} lines")
        times = measure(tree, args.runs)
        for name, value in times.items():
            print(f"  {name:24} {value:8.2f} s")
        floor = times["ast.parse every file"]
        cold, warm = times["session-lint cold"], times["session-lint warm"]
        print(f"  cold / ast.parse         {cold / floor:8.2f}  (target <= 4)")
        print(f"  warm / cold              {warm / cold:8.3f}")
        if "ruff --select ASYNC" in times:
            print(f"  warm / ruff              {warm / times['ruff --select ASYNC']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
