"""Reading rule fixtures: ``# error: SL101`` markers and ``# config:``/``# path:``/
``# requires:`` headers.

The fixtures are files of a project that depends on session-runtime, SQLAlchemy and
asyncpg >= 0.32 (``DEFAULT_REQUIREMENTS``): fixes may import from them; its
``app.db`` module holds the engine (``EVIDENCE_MODULES``). A fixture
with ``# requires: <PEP 508 requirement>`` headers declares exactly those instead
(``# requires: asyncpg==0.29.0``), and ``# requires: (no dependency file)`` stands
for a project where none was found. ``# index: this file`` adds what the project
index learns from the file itself (its committing helpers, say) as if it were the
project's only module. ``# fix: none`` marks a fixture of a fixing
rule whose findings must carry no fix (it has no ``.fixed.py``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from session_lint.core.noqa import listed_codes, with_codes
from session_lint.project.config import Config, config_from_mapping
from session_lint.project.dependencies import dependency_facts
from session_lint.project.facts import ProjectIndex
from session_lint.project.index import scan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RULE_FIXTURES = ROOT / "fixtures" / "rules"
DEFAULT_REQUIREMENTS = ("session-runtime", "sqlalchemy[asyncio]>=2.0", "asyncpg>=0.32")
NO_DEPENDENCY_FILE = "(no dependency file)"
# The fixtures' and docs examples' project keeps its engine and session factory in
# ``app.db`` (as the project index would find): importing from it is evidence of
# SQLAlchemy (``session_lint/project/evidence.py``).
EVIDENCE_MODULES = ("app.db",)
MARKER = re.compile(r"#\s*error:\s*(?P<codes>SL\d{3}(?:\s*,\s*SL\d{3})*)\s*$")


@dataclass(frozen=True)
class RuleFixture:
    file: Path
    code: str
    source: bytes
    path: str  # the path the file is analysed as
    config: Config
    expected: frozenset[tuple[int, str]]  # (line, code)
    no_fix: bool = False  # ``# fix: none``: the rule fixes, but not here

    @property
    def fixed_file(self) -> Path:
        return self.file.with_name(self.file.name[: -len(".py")] + ".fixed.py")


def load(file: Path) -> RuleFixture:
    source = file.read_bytes()
    text = source.decode("utf-8")
    path = f"app/{file.name}"
    expected: set[tuple[int, str]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("# path:"):
            path = stripped[len("# path:") :].strip()
        match = MARKER.search(line)
        if match:
            for code in re.split(r"\s*,\s*", match.group("codes")):
                expected.add((number, code))
    code = file.name[:5]
    # A rule's fixture runs its rule even when the rule is opt-in (SL102, SL302),
    # unless ``# selection: default`` asks for the rule as a default run has it
    # (SL404's default form).
    config = config_from_headers(text, path)
    if _headers(text, "selection") != ["default"]:
        config = config.with_overrides(extend_select=(*config.extend_select, code))
    no_fix = _headers(text, "fix") == ["none"]
    return RuleFixture(file, code, source, path, config, frozenset(expected), no_fix)


def _headers(text: str, name: str) -> list[str]:
    prefix = f"# {name}:"
    return [
        line.strip()[len(prefix) :].strip()
        for line in text.splitlines()
        if line.strip().startswith(prefix)
    ]


def index_from_requirements(requirements: Iterable[str]) -> ProjectIndex:
    """The index of a project whose ``requirements.txt`` lists exactly
    ``requirements`` (PEP 508 strings), read as the CLI reads one."""
    with tempfile.TemporaryDirectory() as root:
        Path(root, "requirements.txt").write_text("\n".join(requirements) + "\n")
        return ProjectIndex(**dependency_facts(Path(root)))


def project_from_headers(text: str, path: str = "app/example.py") -> ProjectIndex:
    """The project a fixture (or a docs example) belongs to: ``DEFAULT_REQUIREMENTS``
    unless ``# requires:`` headers say otherwise; with ``# index: this file``, what
    the index learns from the file analysed as ``path``."""
    requirements = _headers(text, "requires") or list(DEFAULT_REQUIREMENTS)
    if requirements == [NO_DEPENDENCY_FILE]:
        project = ProjectIndex(evidence_modules=EVIDENCE_MODULES)
    else:
        project = replace(index_from_requirements(requirements), evidence_modules=EVIDENCE_MODULES)
    if _headers(text, "index") == ["this file"]:
        with tempfile.TemporaryDirectory() as root:
            file = Path(root) / "module.py"
            file.write_text(text, encoding="utf-8")
            learned = scan(Path(root), [(path, file)])
        project = replace(
            project,
            committing_helpers=learned.committing_helpers,
            sql_helpers=learned.sql_helpers,
            effects=learned.effects,
            held_attributes=learned.held_attributes,
            instances=learned.instances,
            session_holders=learned.session_holders,
            scoped_removals=learned.scoped_removals,
            evidence_modules=(*EVIDENCE_MODULES, *learned.evidence_modules),
        )
    return project


def config_from_headers(text: str, path: str = "app/example.py") -> Config:
    """``# config: <toml line>`` headers as the config, with the project from the
    ``# requires:`` and ``# index:`` headers."""
    config = config_from_mapping(tomllib.loads("\n".join(_headers(text, "config"))), root=".")
    return config.with_overrides(project=project_from_headers(text, path))


def all_fixtures() -> list[Path]:
    return sorted(
        p for p in RULE_FIXTURES.glob("SL[0-9][0-9][0-9]*.py") if not p.name.endswith(".fixed.py")
    )


def with_noqa(source: bytes) -> bytes:
    """Every ``# error: X`` marker turned into ``# noqa: X``, or into one more
    code of the line's ``# noqa`` list when it has one: flake8 reads only the
    first noqa comment of a line."""
    lines = source.split(b"\n")
    for index, line in enumerate(lines):
        text = line.decode("utf-8", "surrogateescape")
        marker = MARKER.search(text)
        if marker is None:
            continue
        head = text[: marker.start()].rstrip()
        codes = re.split(r"\s*,\s*", marker.group("codes"))
        if listed_codes(head):
            merged = with_codes(head, 1, codes)
            assert merged is not None
            lines[index] = merged.encode("utf-8", "surrogateescape")
        else:
            lines[index] = re.sub(rb"#\s*error:\s*", b"# noqa: ", line)
    return b"\n".join(lines)
