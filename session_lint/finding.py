"""What a rule reports: a finding, and optionally a fix with its safety level."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias

# Findings travel through the cache and the reporters, which must not pay for
# importing libcst on a warm run: libcst is needed only to type the fixes.
if TYPE_CHECKING:
    import libcst as cst


class Applicability(enum.Enum):
    """How sure we are that a fix keeps the program's meaning (ruff's levels)."""

    SAFE = "safe"  # cannot change behaviour; applied by --fix
    UNSAFE = "unsafe"  # valid code, may change behaviour; needs --unsafe-fixes too

    def allowed(self, *, unsafe_fixes: bool) -> bool:
        return self is Applicability.SAFE or unsafe_fixes


class FixAvailability(enum.Enum):
    """What a rule's docs say about fixes: whether every finding, some, or none carry one."""

    NONE = "none"
    SOMETIMES = "sometimes"
    ALWAYS = "always"


@dataclass(frozen=True)
class Import:
    """An import a fix needs: ``from module import name`` (or ``import module`` when name is None)."""

    module: str
    name: str | None = None

    @classmethod
    def from_target(cls, target: str) -> Import:
        """``"pkg.mod:attr"`` (config style) or ``"pkg.mod.attr"`` -> Import."""
        if ":" in target:
            module, _, name = target.partition(":")
        else:
            module, _, name = target.rpartition(".")
        if not module or not name:
            raise ValueError(f"not an importable 'module:name' target: {target!r}")
        return cls(module, name)


# A replacement gets the original node and returns the node to put in its place,
# or ``cst.RemovalSentinel.REMOVE`` / ``cst.FlattenSentinel`` for statements.
Replacement: TypeAlias = "cst.CSTNode | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNode]"


@dataclass(frozen=True)
class Fix:
    """Node replacements computed from the *original* tree, applied after the walk.

    ``edits`` maps an original node (by identity) to its replacement. ``imports``
    lists what the new code needs; the fix layer adds each once, merged with the
    file's existing imports.
    """

    applicability: Applicability
    edits: tuple[tuple[cst.CSTNode, Replacement], ...]
    imports: tuple[Import, ...] = ()
    description: str = ""

    @classmethod
    def replace(
        cls,
        node: cst.CSTNode,
        new: Replacement,
        applicability: Applicability,
        *,
        imports: tuple[Import, ...] = (),
        description: str = "",
    ) -> Fix:
        return cls(applicability, ((node, new),), imports, description)


# Control characters and every character ``str.splitlines`` breaks a line at.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with its control characters escaped as Python does (``\\n``)."""
    return _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True)
class Finding:
    """One reported problem. Lines and columns are 1-based (columns count characters)."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    name: str
    message: str
    fix: Fix | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        # A message quotes the code (a dict key, a string): a line break there
        # would split the one-line formats (text, flake8) in two.
        if _LINE_BREAKING.search(self.message):
            object.__setattr__(self, "message", one_line(self.message))

    @property
    def fix_applicability(self) -> Applicability | None:
        return self.fix.applicability if self.fix else None

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.code)

    @classmethod
    def at(cls, path: str, line: int, column: int, rule: type[Any], message: str) -> Finding:
        """A finding at one position (no range), without a fix: SL000's."""
        return cls(path, line, column, line, column, rule.code, rule.name, message)

    def without_edits(self) -> Finding:
        """The finding without its fix's syntax-tree edits (only the applicability
        and description survive): what a report needs, cheap to pickle and store."""
        if self.fix is None or not self.fix.edits:
            return self
        return replace(self, fix=Fix(self.fix.applicability, (), (), self.fix.description))

    # -- the one encoding, for the cache and the analysis server ------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything but the path and the fix's edits, as JSON values."""
        applicability = self.fix_applicability
        return {
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "fix": None if applicability is None else applicability.value,
            "fix_description": "" if self.fix is None else self.fix.description,
        }

    @classmethod
    def from_dict(cls, path: str, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`to_dict` encoded, at ``path``; raises ``KeyError``,
        ``TypeError`` or ``ValueError`` on anything else."""
        fix = data["fix"]
        return cls(
            path,
            int(data["line"]),
            int(data["column"]),
            int(data["end_line"]),
            int(data["end_column"]),
            str(data["code"]),
            str(data["name"]),
            str(data["message"]),
            None if fix is None else Fix(Applicability(fix), (), (), str(data["fix_description"])),
        )
