"""What a rule reports: a finding, and optionally a fix with its safety level."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

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
