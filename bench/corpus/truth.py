"""Recall on the real-code corpus: the truth set and the known misses.

``bench/corpus/truth.toml`` lists the real session-hygiene problems that readers
found in corpus packages by reading their code *before* seeing session-lint's
findings (docs/corpus.md, "Recall"), and the look-alikes they checked and found
fine. ``bench/corpus/known_misses.toml`` lists the in-scope problems no rule finds
yet, each with why and what will find it.

A problem is **found** when a finding of any rule sits within
:data:`WINDOW` lines of it in the same file of the same package. A finding
**sits on** a look-alike when it is on the look-alike's line and is of the
look-alike's rule (any rule, for an ``other:`` category): the line that is fine
for SL502 may hold a real SL503 problem.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.corpus.lint import Record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's venv is 3.11
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
TRUTH_FILE = HERE / "truth.toml"
MISSES_FILE = HERE / "known_misses.toml"
WINDOW = 2  # lines either side
VERDICTS = ("real", "debatable")


class TruthError(Exception):
    """truth.toml or known_misses.toml is malformed."""


@dataclass(frozen=True)
class Problem:
    package: str
    path: str
    line: int
    category: str
    verdict: str
    in_scope: bool
    why: str
    why_out: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.package, self.path, self.line)

    def label(self) -> str:
        return f"{self.package}:{self.path}:{self.line} {self.category}"


@dataclass(frozen=True)
class Lookalike:
    package: str
    path: str
    line: int
    category: str
    why_fine: str

    def label(self) -> str:
        return f"{self.package}:{self.path}:{self.line} {self.category}"


@dataclass(frozen=True)
class Miss:
    package: str
    path: str
    line: int
    reason: str
    found_by: str  # the issue or rule that will find it

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.package, self.path, self.line)


def _tables(path: Path, name: str) -> list[dict[str, object]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TruthError(f"{path.name}: {exc}") from exc
    tables = data.get(name, [])
    if not isinstance(tables, list):
        raise TruthError(f"{path.name}: [[{name}]] must be an array of tables")
    return tables


def _typed(table: dict[str, object], where: str, fields: dict[str, type]) -> dict[str, object]:
    for field, kind in fields.items():
        if not isinstance(table.get(field), kind):
            raise TruthError(f"{where}: `{field}` must be a {kind.__name__}")
    unknown = set(table) - set(fields) - {"why_out"}
    if unknown:
        raise TruthError(f"{where}: unknown keys {sorted(unknown)}")
    return table


def load_truth(path: Path = TRUTH_FILE) -> tuple[list[Problem], list[Lookalike]]:
    problems: list[Problem] = []
    for n, table in enumerate(_tables(path, "problem"), 1):
        where = f"{path.name} problem #{n}"
        fields = {"package": str, "path": str, "line": int, "category": str, "verdict": str,
                  "in_scope": bool, "why": str}  # fmt: skip
        _typed(table, where, fields)
        problem = Problem(**table)  # type: ignore[arg-type]
        if problem.verdict not in VERDICTS:
            raise TruthError(f"{where}: verdict must be one of {VERDICTS}")
        if not problem.in_scope and not problem.why_out.strip():
            raise TruthError(f"{where}: an out-of-scope problem needs `why_out`")
        problems.append(problem)
    lookalikes: list[Lookalike] = []
    for n, table in enumerate(_tables(path, "lookalike"), 1):
        where = f"{path.name} lookalike #{n}"
        fields = {"package": str, "path": str, "line": int, "category": str, "why_fine": str}
        lookalikes.append(Lookalike(**_typed(table, where, fields)))  # type: ignore[arg-type]
    return problems, lookalikes


def load_misses(path: Path = MISSES_FILE) -> list[Miss]:
    misses: list[Miss] = []
    for n, table in enumerate(_tables(path, "miss"), 1):
        where = f"{path.name} miss #{n}"
        fields = {"package": str, "path": str, "line": int, "reason": str, "found_by": str}
        misses.append(Miss(**_typed(table, where, fields)))  # type: ignore[arg-type]
    return misses


def _lines_by_file(records: Sequence[Record]) -> dict[tuple[str, str], list[tuple[int, str]]]:
    out: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for record in records:
        out[(record.package, record.path)].append((record.line, record.code))
    return out


def finders(problem: Problem, records: Sequence[Record]) -> list[str]:
    """The codes of the findings within :data:`WINDOW` lines of ``problem``."""
    return sorted(
        {
            code
            for line, code in _lines_by_file(records).get((problem.package, problem.path), [])
            if abs(line - problem.line) <= WINDOW
        }
    )


def counted(problems: Sequence[Problem]) -> list[Problem]:
    """The problems recall is measured on: real and in scope."""
    return [p for p in problems if p.verdict == "real" and p.in_scope]


@dataclass(frozen=True)
class Recall:
    found: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        return self.found / self.total if self.total else None

    def text(self) -> str:
        value = self.value
        return f"{self.found}/{self.total}" + ("" if value is None else f" = {value:.2f}")


def recall_by(
    problems: Sequence[Problem], records: Sequence[Record], key: Callable[[Problem], str]
) -> dict[str, Recall]:
    """Recall of the counted problems, grouped by ``key``."""
    lines = _lines_by_file(records)
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for problem in counted(problems):
        near = lines.get((problem.package, problem.path), [])
        counts = found[key(problem)]
        counts[1] += 1
        counts[0] += any(abs(line - problem.line) <= WINDOW for line, _ in near)
    return {name: Recall(f, t) for name, (f, t) in sorted(found.items())}


def overall_recall(problems: Sequence[Problem], records: Sequence[Record]) -> Recall:
    return recall_by(problems, records, lambda p: "all").get("all", Recall())


def misses(problems: Sequence[Problem], records: Sequence[Record]) -> list[Problem]:
    """The counted problems no finding is near."""
    return [p for p in counted(problems) if not finders(p, records)]


def on_lookalikes(
    lookalikes: Sequence[Lookalike], records: Sequence[Record]
) -> list[tuple[Lookalike, str]]:
    """(look-alike, code) for each finding on a look-alike's line."""
    lines = _lines_by_file(records)
    return [
        (lookalike, code)
        for lookalike in lookalikes
        for line, code in lines.get((lookalike.package, lookalike.path), [])
        if line == lookalike.line
        and (code == lookalike.category or not lookalike.category.startswith("SL"))
    ]
