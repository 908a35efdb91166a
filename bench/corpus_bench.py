"""Precision and recall of session-lint on the real-code corpus.

    python bench/corpus_bench.py [--dir DIR] [--workers N]

Fetches the corpus (``bench/corpus/packages.toml``, cached in ``.corpus/``), lints
every package as its own project and prints, with the verdicts of
``bench/corpus/reviews.toml``: findings per rule, per file role and per package,
each with its real / false / debatable / unreviewed counts and precision =
real / (real + false); the overall figure; the fixes' verdicts; the findings in
files without SQLAlchemy evidence; and how long the run took. A finding the reviews
do not list counts as unreviewed (``python bench/corpus/review.py`` adds it).
Then recall, from the truth set (``bench/corpus/truth.toml``): the in-scope real
problems found, per package, per category and overall, the misses (with the issue
or rule ``bench/corpus/known_misses.toml`` names for each), and any finding on a
recorded look-alike. See docs/corpus.md.
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
from bench.corpus.truth import (
    Lookalike,
    Miss,
    Problem,
    Recall,
    TruthError,
    counted,
    finders,
    load_misses,
    load_truth,
    on_lookalikes,
    overall_recall,
    recall_by,
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


def recall_table(title: str, rows: dict[str, Recall]) -> list[str]:
    width = max([len(title), *(len(name) for name in rows)])
    head = f"{title:<{width}}  found  in scope (real)  recall"
    lines = [head, "-" * len(head)]
    for name, counts in rows.items():
        value = "   -" if counts.value is None else f"{counts.value:4.2f}"
        lines.append(f"{name:<{width}}  {counts.found:5}  {counts.total:15}  {value:>6}")
    return lines


def recall_lines(
    problems: Sequence[Problem],
    lookalikes: Sequence[Lookalike],
    known: Sequence[Miss],
    records: Sequence[Record],
) -> list[str]:
    """Recall beside precision: the truth set's in-scope real problems found, per
    package and per category, the misses, and the findings on look-alikes."""
    read = sorted({p.package for p in problems} | {lookalike.package for lookalike in lookalikes})
    lines = [
        f"truth set (bench/corpus/truth.toml): {len(problems)} problems in {len(read)} "
        f"packages read blind ({len(counted(problems))} real and in scope), "
        f"{len(lookalikes)} look-alikes",
        "",
    ]
    lines += recall_table("package", recall_by(problems, records, lambda p: p.package))
    lines.append("")
    lines += recall_table("category", recall_by(problems, records, lambda p: p.category))
    lines.append("")
    lines += recall_table("overall", {"all": overall_recall(problems, records)})
    lines.append("")
    reasons = {m.key: m for m in known}
    missed = [p for p in counted(problems) if not finders(p, records)]
    lines.append(f"misses ({len(missed)}):")
    for problem in missed:
        miss = reasons.get(problem.key)
        note = f"  [{miss.found_by}]" if miss else "  [not in known_misses.toml]"
        lines.append(f"  {problem.label()}{note}")
    hits = on_lookalikes(lookalikes, records)
    lines.append(f"findings on look-alikes ({len(hits)}):")
    lines += [f"  {lookalike.label()}: {code}" for lookalike, code in hits]
    return lines


def report(
    records: Sequence[Record],
    reviews: Sequence[Review],
    *,
    fetch_seconds: float,
    lint_seconds: float,
    packages: Sequence[str],
    truth: tuple[Sequence[Problem], Sequence[Lookalike], Sequence[Miss]] | None = None,
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
    if truth is not None:
        lines.append("")
        lines += recall_lines(*truth, records)
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
        problems, lookalikes = load_truth()
        known = load_misses()
        started = time.perf_counter()
        trees = fetch(args.dir)
        fetched = time.perf_counter()
        runs = lint_corpus(trees, workers=args.workers)
        linted = time.perf_counter()
    except (FetchError, LintError, ReviewsError, TruthError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        report(
            records_of(runs),
            reviews,
            fetch_seconds=fetched - started,
            lint_seconds=linted - fetched,
            packages=[tree.package.name for tree in trees],
            truth=(problems, lookalikes, known),
        ),
        end="",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
