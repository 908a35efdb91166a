"""Precision of session-lint on the real-code corpus, from a fresh lint and the reviews.

    python bench/corpus_bench.py [--dir DIR] [--workers N]

Fetches the corpus (``bench/corpus/packages.toml``, cached in ``.corpus/``), lints
every package as its own project and prints, with the verdicts of
``bench/corpus/reviews.toml``: findings per rule, per file role and per package,
each with its real / false / debatable / unreviewed counts and precision =
real / (real + false); the overall figure; the fixes' verdicts; the findings in
files without SQLAlchemy evidence; and how long the run took. A finding the reviews
do not list counts as unreviewed (``python bench/corpus/review.py`` adds it).
See docs/corpus.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.corpus`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus.fetch import FetchError, fetch
from bench.corpus.lint import OWN_EVIDENCE, LintError, Record, lint_corpus, records_of
from bench.corpus.review import (
    THRESHOLD,
    UPDATE_COMMAND,
    Review,
    ReviewsError,
    Tally,
    compare,
    load_reviews,
    overall,
    tally,
)


def precision_text(counts: Tally) -> str:
    value = counts.precision
    return "   -" if value is None else f"{value:4.2f}"


def table(title: str, rows: dict[str, Tally]) -> list[str]:
    width = max([len(title), *(len(name) for name in rows)])
    head = f"{title:<{width}}  findings  real  false  debatable  unreviewed  precision"
    lines = [head, "-" * len(head)]
    for name, counts in rows.items():
        lines.append(
            f"{name:<{width}}  {counts.total:8}  {counts.real:4}  {counts.false:5}  "
            f"{counts.debatable:9}  {counts.unreviewed:10}  {precision_text(counts):>9}"
        )
    return lines


def fix_lines(records: Sequence[Record], reviews: Sequence[Review]) -> list[str]:
    fixable = {r.key for r in records if r.fixable is not None}
    verdicts = {r.key: r.fix for r in reviews}
    counts = Counter(verdicts.get(key) or "unlisted" for key in fixable)
    kinds = Counter(r.fixable for r in records if r.fixable is not None)
    listed = ", ".join(f"{counts[v]} {v}" for v in ("right", "wrong", "unreviewed", "unlisted"))
    return [
        f"fixes ({kinds['safe']} safe, {kinds['unsafe']} unsafe, all applied by "
        f"--fix --unsafe-fixes): {listed}"
    ]


def report(
    records: Sequence[Record],
    reviews: Sequence[Review],
    *,
    fetch_seconds: float,
    lint_seconds: float,
    packages: Sequence[str],
) -> str:
    lines: list[str] = []
    lines += table("rule", tally(records, reviews, lambda r: r.code))
    lines.append("")
    lines += table("role", tally(records, reviews, lambda r: r.role))
    lines.append("")
    by_package = tally(records, reviews, lambda r: r.package)
    rows = {name: by_package.get(name, Tally()) for name in packages}
    lines += table("package", rows)
    lines.append("")
    whole = overall(records, reviews)
    lines += table("overall", {"all": whole})
    lines.append("")
    lines += fix_lines(records, reviews)
    without = [r for r in records if not r.evidence and r.code not in OWN_EVIDENCE]
    files = len({(r.package, r.path) for r in without})
    lines.append(
        f"findings in files without SQLAlchemy evidence: {len(without)} in {files} files "
        "(evidence: the bytes match \\b(?:from|import)\\s+(?:sqlalchemy|sqlmodel)\\b; a "
        f"regex, good enough for a bench; {', '.join(sorted(OWN_EVIDENCE))} are their own)"
    )
    comparison = compare(reviews, records)
    if not comparison.same:
        lines.append(
            f"reviews.toml is out of date: {len(comparison.appeared)} new, "
            f"{len(comparison.vanished)} gone (run {UPDATE_COMMAND})"
        )
    lines.append(f"target: precision >= {THRESHOLD:.2f} overall and for every rule that fires")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(
        f"run {stamp}: fetch {fetch_seconds:.1f} s, lint {lint_seconds:.1f} s "
        f"({len(packages)} packages, {len(records)} findings)"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="corpus directory (default: .corpus/ at the repo root)")
    parser.add_argument(
        "--workers", type=int, default=None, help="packages linted at a time (default: cores)"
    )
    args = parser.parse_args(argv)
    try:
        reviews = load_reviews()
        started = time.perf_counter()
        trees = fetch(args.dir)
        fetched = time.perf_counter()
        runs = lint_corpus(trees, workers=args.workers)
        linted = time.perf_counter()
    except (FetchError, LintError, ReviewsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        report(
            records_of(runs),
            reviews,
            fetch_seconds=fetched - started,
            lint_seconds=linted - fetched,
            packages=[tree.package.name for tree in trees],
        ),
        end="",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
