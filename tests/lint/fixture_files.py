"""Reading rule fixtures: ``# error: SL101`` markers and ``# config:``/``# path:`` headers."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from session_lint.config import Config, config_from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RULE_FIXTURES = ROOT / "fixtures" / "rules"
MARKER = re.compile(r"#\s*error:\s*(?P<codes>SL\d{3}(?:\s*,\s*SL\d{3})*)\s*$")


@dataclass(frozen=True)
class RuleFixture:
    file: Path
    code: str
    source: bytes
    path: str  # the path the file is analysed as
    config: Config
    expected: frozenset[tuple[int, str]]  # (line, code)

    @property
    def fixed_file(self) -> Path:
        return self.file.with_name(self.file.name[: -len(".py")] + ".fixed.py")


def load(file: Path) -> RuleFixture:
    source = file.read_bytes()
    text = source.decode("utf-8")
    config_lines: list[str] = []
    path = f"app/{file.name}"
    expected: set[tuple[int, str]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("# config:"):
            config_lines.append(stripped[len("# config:") :].strip())
        elif stripped.startswith("# path:"):
            path = stripped[len("# path:") :].strip()
        match = MARKER.search(line)
        if match:
            for code in re.split(r"\s*,\s*", match.group("codes")):
                expected.add((number, code))
    config = config_from_mapping(tomllib.loads("\n".join(config_lines)), root=".")
    code = file.name[:5]
    return RuleFixture(file, code, source, path, config, frozenset(expected))


def all_fixtures() -> list[Path]:
    return sorted(
        p for p in RULE_FIXTURES.glob("SL[0-9][0-9][0-9]*.py") if not p.name.endswith(".fixed.py")
    )


def with_noqa(source: bytes) -> bytes:
    """Every ``# error: X`` marker turned into ``# noqa: X``."""
    return re.sub(rb"#\s*error:\s*", b"# noqa: ", source)
