"""Reviews of the corpus findings (``reviews.toml``): read, compare, tally, rewrite.

    python bench/corpus/review.py [--dir DIR] [--check]

Rewrites ``reviews.toml`` from a fresh lint of the corpus: findings still present
keep their verdicts and reasons, new ones are added as ``unreviewed``, vanished ones
are dropped; both lists are printed. ``--check`` writes nothing and exits 1 when the
file would change. Commit the rewritten file with the change that caused it, after
reviewing the new entries: a change of precision is then a reviewed diff.

The file format is described in :data:`HEADER` (the top of ``reviews.toml``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench.corpus`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.corpus.fetch import FetchError, corpus_dir, fetch, load_packages
from bench.corpus.lint import Key, LintError, Record, lint_corpus, records_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's venv is 3.11
    import tomli as tomllib

REVIEWS_FILE = Path(__file__).resolve().parent / "reviews.toml"
VERDICTS = ("real", "false", "debatable", "unreviewed")
FIX_VERDICTS = ("right", "wrong", "unreviewed")
THRESHOLD = 0.90  # the precision every rule that fires, and the whole corpus, must reach
UPDATE_COMMAND = "python bench/corpus/review.py"

HEADER = """\
# Reviewed findings of session-lint on the real-code corpus (bench/corpus/packages.toml).
# See docs/corpus.md. Rewritten by `python bench/corpus/review.py`, which keeps every
# verdict and reason below while the finding is still reported; edit only the
# verdict, reason, fix and fix_reason values.
#
# One [[finding]] table per finding, keyed by package, path (relative to the
# package's unpacked tree), line and code:
#
#   verdict     real       the code fails or corrupts data at run time, or violates the
#                          hazard the rule documents
#               false      the finding is wrong about the code
#               debatable  the hazard exists, but the code may well be deliberate
#               unreviewed not looked at yet (the tests fail while any is left)
#   reason      one line: why (required once reviewed)
#   fix         only for a finding with a fix (safe or unsafe): what
#               `--fix --unsafe-fixes` does to it, right | wrong | unreviewed;
#               its key is the finding's key plus "fix"
#   fix_reason  one line: why
#   count       only when the same key is reported more than once (same line, same code)
#   message     the message as last reported, for the reader; never compared
#
# Precision = real / (real + false), per rule, per file role and overall
# (`python bench/corpus_bench.py`); the tests want >= 0.90.
"""


class ReviewsError(Exception):
    """``reviews.toml`` does not parse or holds a value it may not."""


@dataclass(frozen=True)
class Review:
    package: str
    path: str
    line: int
    code: str
    verdict: str = "unreviewed"
    reason: str = ""
    fix: str | None = None  # None: the finding has no fix
    fix_reason: str = ""
    count: int = 1
    message: str = ""

    @property
    def key(self) -> Key:
        return (self.package, self.path, self.line, self.code)


FIELDS = {
    "package": str,
    "path": str,
    "line": int,
    "code": str,
    "verdict": str,
    "reason": str,
    "fix": str,
    "fix_reason": str,
    "count": int,
    "message": str,
}
REQUIRED = ("package", "path", "line", "code", "verdict")


# -- reading and writing ----------------------------------------------------------


def load_reviews(path: Path = REVIEWS_FILE) -> list[Review]:
    """The reviews in ``path`` (none when it does not exist), validated."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ReviewsError(f"{path}: {exc}") from exc
    unknown_tables = set(data) - {"finding"}
    if unknown_tables:
        raise ReviewsError(f"{path}: unknown top-level keys {sorted(unknown_tables)}")
    reviews: list[Review] = []
    seen: set[Key] = set()
    for number, entry in enumerate(data.get("finding", []), 1):
        where = f"{path}: finding #{number}"
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise ReviewsError(f"{where}: unknown keys {sorted(unknown)}")
        for name in REQUIRED:
            if name not in entry:
                raise ReviewsError(f"{where}: {name} is missing")
        for name, kind in FIELDS.items():
            if name in entry and not isinstance(entry[name], kind):
                raise ReviewsError(f"{where}: {name} must be a {kind.__name__}")
        review = Review(**entry)
        if review.verdict not in VERDICTS:
            raise ReviewsError(f"{where}: verdict {review.verdict!r} is not one of {VERDICTS}")
        if review.fix is not None and review.fix not in FIX_VERDICTS:
            raise ReviewsError(f"{where}: fix {review.fix!r} is not one of {FIX_VERDICTS}")
        if review.count < 1:
            raise ReviewsError(f"{where}: count must be at least 1")
        if review.key in seen:
            raise ReviewsError(f"{where}: {format_key(review.key)} is listed twice")
        seen.add(review.key)
        reviews.append(review)
    return reviews


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, DEL aside)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def render_reviews(reviews: Iterable[Review]) -> str:
    parts = [HEADER]
    for review in reviews:
        lines = [
            "[[finding]]",
            f"package = {toml_string(review.package)}",
            f"path = {toml_string(review.path)}",
            f"line = {review.line}",
            f"code = {toml_string(review.code)}",
            f"verdict = {toml_string(review.verdict)}",
            f"reason = {toml_string(review.reason)}",
        ]
        if review.fix is not None:
            lines.append(f"fix = {toml_string(review.fix)}")
            lines.append(f"fix_reason = {toml_string(review.fix_reason)}")
        if review.count != 1:
            lines.append(f"count = {review.count}")
        lines.append(f"message = {toml_string(review.message)}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def format_key(key: Key) -> str:
    package, path, line, code = key
    return f"{package}: {path}:{line} {code}"


# -- comparing a lint run with the reviews ------------------------------------------


def order(packages: Sequence[str]) -> Callable[[Key], tuple[int, str, int, str]]:
    """Sort key: packages in packages.toml order, then path, line, code."""
    rank = {name: number for number, name in enumerate(packages)}

    def sort_key(key: Key) -> tuple[int, str, int, str]:
        package, path, line, code = key
        return (rank.get(package, len(rank)), path, line, code)

    return sort_key


@dataclass
class Comparison:
    """What a lint run reports that the reviews do not list, and the reverse; keys
    of fixes end with ``"fix"`` (``format_key`` adds it)."""

    appeared: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.appeared and not self.vanished


def compare(reviews: Sequence[Review], records: Sequence[Record]) -> Comparison:
    reported = Counter(r.key for r in records)
    listed = Counter({r.key: r.count for r in reviews})
    fixable = {r.key for r in records if r.fixable is not None}
    fix_listed = {r.key for r in reviews if r.fix is not None}
    sort_key = order([p.name for p in load_packages()])
    result = Comparison()
    for key in sorted((reported - listed).keys() | (listed - reported).keys(), key=sort_key):
        extra = reported[key] - listed[key]
        times = f" (x{abs(extra)})" if abs(extra) > 1 else ""
        (result.appeared if extra > 0 else result.vanished).append(format_key(key) + times)
    for key in sorted(fixable - fix_listed, key=sort_key):
        result.appeared.append(format_key(key) + " fix")
    for key in sorted(fix_listed - fixable, key=sort_key):
        result.vanished.append(format_key(key) + " fix")
    return result


def merge(reviews: Sequence[Review], records: Sequence[Record]) -> tuple[list[Review], Comparison]:
    """The reviews for this lint run: the verdicts of the findings still present
    kept, the new findings ``unreviewed``, the vanished ones dropped."""
    old = {r.key: r for r in reviews}
    counts = Counter(r.key for r in records)
    first: dict[Key, Record] = {}
    fixable: set[Key] = set()
    for record in records:
        first.setdefault(record.key, record)
        if record.fixable is not None:
            fixable.add(record.key)
    sort_key = order([p.name for p in load_packages()])
    merged: list[Review] = []
    for key in sorted(first, key=sort_key):
        record = first[key]
        review = old.get(key) or Review(*key)
        fix, fix_reason = None, ""
        if key in fixable:
            fix = review.fix or "unreviewed"
            fix_reason = review.fix_reason if review.fix else ""
        merged.append(
            replace(
                review, fix=fix, fix_reason=fix_reason, count=counts[key], message=record.message
            )
        )
    return merged, compare(reviews, records)


# -- tallies ------------------------------------------------------------------------


@dataclass
class Tally:
    real: int = 0
    false: int = 0
    debatable: int = 0
    unreviewed: int = 0

    @property
    def total(self) -> int:
        return self.real + self.false + self.debatable + self.unreviewed

    @property
    def precision(self) -> float | None:
        """real / (real + false); None when neither was given."""
        judged = self.real + self.false
        return self.real / judged if judged else None

    def add(self, verdict: str) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)


def verdict_of(reviews: Sequence[Review]) -> Callable[[Record], str]:
    """A record's verdict; a finding the reviews do not list counts as unreviewed."""
    verdicts = {r.key: r.verdict for r in reviews}
    return lambda record: verdicts.get(record.key, "unreviewed")


def tally(
    records: Sequence[Record], reviews: Sequence[Review], group: Callable[[Record], str]
) -> dict[str, Tally]:
    verdict = verdict_of(reviews)
    out: dict[str, Tally] = defaultdict(Tally)
    for record in records:
        out[group(record)].add(verdict(record))
    return dict(sorted(out.items()))


def overall(records: Sequence[Record], reviews: Sequence[Review]) -> Tally:
    return tally(records, reviews, lambda _: "all").get("all", Tally())


def below_threshold(name: str, counts: Tally, threshold: float = THRESHOLD) -> str | None:
    """Why ``counts`` fails the precision bar, or None when it passes. Unknown
    precision (no real or false verdict yet, some findings unreviewed) fails."""
    precision = counts.precision
    if precision is None:
        if counts.unreviewed:
            return f"{name}: precision unknown ({counts.unreviewed} unreviewed)"
        return None  # only debatable findings: nothing wrong was found
    if precision < threshold:
        return (
            f"{name}: precision {precision:.2f} < {threshold:.2f} "
            f"({counts.real} real, {counts.false} false, {counts.unreviewed} unreviewed)"
        )
    return None


# -- command line -------------------------------------------------------------------


def fresh_records(directory: str | None = None) -> tuple[list[Record], float]:
    """Fetch and lint the corpus: the records and the lint's wall time in seconds."""
    trees = fetch(directory)
    started = time.perf_counter()
    runs = lint_corpus(trees)
    return records_of(runs), time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="corpus directory (see fetch.py)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    args = parser.parse_args(argv)
    try:
        reviews = load_reviews()
        records, seconds = fresh_records(args.dir)
    except (FetchError, LintError, ReviewsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    merged, comparison = merge(reviews, records)
    print(f"{len(records)} findings in {corpus_dir(args.dir)}, linted in {seconds:.1f} s")
    for title, keys in (("new (unreviewed)", comparison.appeared), ("gone", comparison.vanished)):
        print(f"{title}: {len(keys)}")
        for key in keys:
            print(f"  {key}")
    text = render_reviews(merged)
    current = REVIEWS_FILE.read_text(encoding="utf-8") if REVIEWS_FILE.exists() else ""
    if args.check:
        if text != current:
            print(f"{REVIEWS_FILE.name} is out of date: run {UPDATE_COMMAND}")
            return 1
        return 0
    if text != current:
        REVIEWS_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {REVIEWS_FILE}")
    unreviewed = sum(r.verdict == "unreviewed" for r in merged)
    unreviewed_fixes = sum(r.fix == "unreviewed" for r in merged)
    print(f"{unreviewed} findings and {unreviewed_fixes} fixes unreviewed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
